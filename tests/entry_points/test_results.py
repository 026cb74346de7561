"""Results: the summary table, the plot, and evaluating a checkpoint."""
import copy
import json
import os

import pytest

from scripts import summarize


def fake_run(folder, name, distill, teacher, student, last, best, alpha=0.0, teacher_acc=79.42,
             curve=(10.0, 20.0), **options):
    run = folder / name
    run.mkdir(parents=True)
    summary = {'args': {'distill': distill, 'alpha': alpha, 'dataset': 'cifar100', **options},
               'teacher': teacher, 'student': student, 'last_acc': last, 'best_acc': best,
               'teacher_acc': teacher_acc}
    (run / 'summary.json').write_text(json.dumps(summary))
    (run / 'metrics.jsonl').write_text(''.join(
        json.dumps({'epoch': e + 1, 'test_top1': acc}) + '\n' for e, acc in enumerate(curve)))


def fake_baseline(folder, model, last, best):
    run = folder / f'{model}_cifar100_trial_0'
    run.mkdir(parents=True)
    (run / 'summary.json').write_text(json.dumps(
        {'args': {'dataset': 'cifar100'}, 'model': model, 'last_acc': last, 'best_acc': best}))


@pytest.fixture
def runs(tmp_path):
    students = tmp_path / 'save' / 'student_model'
    fake_run(students, 'a1', 'kd', 'resnet32x4', 'resnet8x4', 73.0, 73.5, alpha=0.9)
    fake_run(students, 'a2', 'kd', 'resnet32x4', 'resnet8x4', 74.0, 74.5, alpha=0.9)
    fake_run(students, 'b1', 'crd', 'resnet32x4', 'resnet8x4', 75.5, 75.9)
    fake_run(students, 'c1', 'crd', 'resnet32x4', 'resnet8x4', 76.0, 76.1, alpha=1.0)
    fake_run(students, 'd1', 'at', 'vgg13', 'vgg8', 71.43, 71.6, teacher_acc=74.64)
    fake_run(students, 'e1', 'kd', 'vgg13', 'vgg8', 72.98, 73.1, alpha=0.9, teacher_acc=74.64)
    fake_baseline(tmp_path / 'save' / 'models', 'resnet8x4', 72.5, 72.9)
    fake_baseline(tmp_path / 'save' / 'models', 'vgg8', 70.36, 70.5)
    return str(students)


def test_table_layout_and_means(runs, capsys):
    assert summarize.main([runs, '--metric', 'last']) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith('|')]
    assert table[0] == '| method | resnet32x4 -> resnet8x4 | vgg13 -> vgg8 |'
    assert table[2] == '| teacher | 79.42 | 74.64 |'
    assert table[3] == '| student | 72.50 | 70.36 |'
    assert table[4] == '| KD | 73.50 ± 0.71 | 72.98 |'  # two trials: mean and sample std
    assert table[5] == '| AT | - | 71.43 |'  # alias 'at' counts as attention
    assert table[6] == '| CRD | 75.50 | - |'
    assert table[7] == '| CRD+KD | 76.00 | - |'
    assert '6 runs, 5 groups, 1-2 trials per group' in out


def test_rows_are_labelled_with_modifiers_and_the_methods_own_options(tmp_path, capsys):
    students = tmp_path / 'student_model'
    pair = ('resnet32x4', 'resnet8x4')
    fake_run(students, 'kd', 'kd', *pair, 73.0, 73.5, alpha=0.9)
    fake_run(students, 'kd_dot', 'kd', *pair, 73.2, 73.5, alpha=0.9, optimizer='dot')
    fake_run(students, 'dkd_all', 'dkd', *pair, 76.0, 76.5, logit_stand=True, ctkd=True,
             optimizer='dot')
    fake_run(students, 'ctkd', 'ctkd', *pair, 74.0, 74.5, alpha=0.9, ctkd=False)
    fake_run(students, 'ctkd_ls', 'ctkd', *pair, 74.5, 74.5, alpha=9.0, logit_stand=True)
    fake_run(students, 'ofd', 'ofd', *pair, 75.0, 75.5, ofd_teacher_bn='eval')
    fake_run(students, 'mlld', 'mlld', *pair, 77.0, 77.5, alpha=0.9)
    assert summarize.main([str(students), '--metric', 'last']) == 0
    rows = [line.split(' | ')[0][2:] for line in capsys.readouterr().out.splitlines()
            if line.startswith('|')][4:]
    assert rows == ['KD', 'KD+DOT', 'DKD+LS+CTKD+DOT', 'CTKD', 'CTKD+LS', 'MLLD',
                    'OFD (ofd_teacher_bn=eval)'], rows


def test_best_epoch_table(runs, capsys):
    assert summarize.main([runs, '--metric', 'best']) == 0
    assert '| KD | 74.00 ± 0.71 | 73.10 |' in capsys.readouterr().out


def test_both_tables_by_default_last_first(runs, capsys):
    assert summarize.main([runs]) == 0
    out = capsys.readouterr().out
    assert out.index('last epoch') < out.index('best epoch')


def test_plot_is_a_png(runs, tmp_path):
    out = tmp_path / 'curves.png'
    assert summarize.main([runs, '--plot', str(out)]) == 0
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 5000


def test_no_runs(tmp_path, capsys):
    assert summarize.main([str(tmp_path)]) == 2
    assert 'no finished runs' in capsys.readouterr().err


# -- eval_student.py ---------------------------------------------------------------------------

import eval_student  # noqa: E402
import train_student  # noqa: E402
from conftest import train_teacher_run, write_cifar100  # noqa: E402
from distiller_zoo import METHODS, Distiller, Needs  # noqa: E402

FAST = ['--epochs', '1', '--batch_size', '16', '--num_workers', '0', '--seed', '0']


class TeacherHead(Distiller):
    """A test-only method that predicts with (a copy of) the teacher's classifier on student
    features."""
    names = ('teacherhead',)
    needs = Needs(student_predicts=False)

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.cls_t = copy.deepcopy(self.teacher_net.get_classifier()).requires_grad_(False)
        self.frozen.append(self.cls_t)

    def forward_test(self, image):
        feats, _ = self.student(image, is_feat=True)
        return self.cls_t(feats[-1])


@pytest.fixture
def tiny(tmp_path):
    data = str(tmp_path / 'data')
    write_cifar100(data, n_train=48, n_test=40)
    save = str(tmp_path / 'save')
    _, teacher = train_teacher_run(data, save, *FAST)
    return data, save, teacher


def eval_accuracy(path, data, capsys, extra=()):
    result = eval_student.run(eval_student.parse_option(
        ['--path', path, '--data_folder', data, '--num_workers', '0', *extra]))
    return result, capsys.readouterr().out


@pytest.mark.parametrize('method', ['kd', 'teacherhead'])
def test_eval_reproduces_the_runs_last_accuracy(tiny, capsys, monkeypatch, method):
    data, save, teacher = tiny
    monkeypatch.setitem(METHODS, 'teacherhead', TeacherHead)
    assert train_student.main(['--path_t', teacher, '--model_s', 'resnet8', '--distill', method,
                               '-r', '1', '-a', '0', '-b', '0', '--data_folder', data,
                               '--save_dir', save] + FAST) == 0
    run = os.path.join(save, 'student_model', os.listdir(os.path.join(save, 'student_model'))[0])
    summary = json.load(open(os.path.join(run, 'summary.json')))
    result, out = eval_accuracy(os.path.join(run, 'resnet8_last.pth'), data, capsys)
    assert result['top1'] == pytest.approx(summary['last_acc'])
    assert f'acc@1 {summary["last_acc"]:.2f}' in out and '(40 images)' in out
    assert ('(teacherhead)' in out) == (method == 'teacherhead')


def test_eval_teacher_checkpoint_and_errors(tiny, capsys):
    data, save, teacher = tiny
    result, out = eval_accuracy(teacher, data, capsys)
    assert out.startswith('resnet14 on cifar100 test') and 0 <= result['top1'] <= 100
    assert eval_student.main(['--path', teacher, '--model', 'resnet8', '--data_folder', data,
                              '--num_workers', '0']) == 2
    assert 'does not match resnet8' in capsys.readouterr().err


def test_eval_needs_only_the_test_split_and_takes_the_runs_data_set(tiny, capsys):
    data, save, teacher = tiny
    os.remove(os.path.join(data, 'cifar-100-python', 'train'))
    result, out = eval_accuracy(teacher, data, capsys)  # no --dataset: the run's own
    assert out.startswith('resnet14 on cifar100 test (40 images)')


def test_eval_stored_dataset_sources(tmp_path):
    import argparse
    from core.checkpoint import Checkpoint

    def stored(state, path):  # a checkpoint holding ``state``
        return eval_student.stored_dataset(Checkpoint.from_dict(state), path)
    assert stored({'opt': {'dataset': 'cifar10'}}, 'x.pth') == 'cifar10'
    assert stored({'opt': argparse.Namespace(dataset='cifar10')},  # RepDistiller's _last.pth
                  'x.pth') == 'cifar10'
    assert stored({'method_opt': {'dataset': 'imagenet'}}, 'x.pth') == 'imagenet'
    (tmp_path / 'summary.json').write_text(json.dumps({'args': {'dataset': 'synthetic'}}))
    assert stored({}, str(tmp_path / 'r_best.pth')) == 'synthetic'
    assert stored({}, str(tmp_path / 'nowhere' / 'r_best.pth')) is None


def test_eval_options(capsys):
    opt = eval_student.parse_option(['--path', 'x.pth', '--num_workers', '999'])
    assert opt.num_workers == min(999, os.cpu_count())
    with pytest.raises(SystemExit):
        eval_student.parse_option(['--help'])
    out = capsys.readouterr().out
    assert '(default: 64)' in out and '(default: ./data)' in out


def test_plot_panels_styles_and_epochs(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    closed = []
    monkeypatch.setattr(plt, 'close', closed.append)  # keep the figure to look at its axes
    students = tmp_path / 'student_model'
    methods = sorted(summarize.LABELS)[:14]
    for i, m in enumerate(methods):
        fake_run(students, f'r{i}', m, 'resnet32x4', 'resnet8x4', 70.0, 71.0, curve=(10, 20, 30))
    fake_run(students, 'c10', 'kd', 'resnet32x4', 'resnet8x4', 1.0, 1.0, curve=(90, 90, 90))
    summary = json.loads((students / 'c10' / 'summary.json').read_text())
    summary['args']['dataset'] = 'cifar10'
    (students / 'c10' / 'summary.json').write_text(json.dumps(summary))
    drawn = summarize.plot_curves(summarize.read_runs(str(students)), str(tmp_path / 'p.png'))
    assert sorted(drawn) == ['resnet32x4 -> resnet8x4 (cifar10)',
                             'resnet32x4 -> resnet8x4 (cifar100)']
    styles = list(drawn['resnet32x4 -> resnet8x4 (cifar100)'].values())
    assert len(styles) == 14 and len(set(styles)) == 14
    axes = [ax for ax in closed[0].axes if ax.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_summary_line_counts_data_sets_apart(runs, capsys, tmp_path):
    students = os.path.dirname(runs + '/')
    fake_run(tmp_path / 'save' / 'student_model', 'z1', 'kd', 'resnet32x4', 'resnet8x4', 1.0,
             1.0, alpha=0.9)
    summary_path = tmp_path / 'save' / 'student_model' / 'z1' / 'summary.json'
    summary = json.loads(summary_path.read_text())
    summary['args']['dataset'] = 'cifar10'
    summary_path.write_text(json.dumps(summary))
    assert summarize.main([students, '--metric', 'last']) == 0
    assert '7 runs, 6 groups, 1-2 trials per group' in capsys.readouterr().out
