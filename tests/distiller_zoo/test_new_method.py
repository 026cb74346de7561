"""A method defined in this file, with a kind of batch of its own (two differently augmented views
of each image), registers, parses its option and trains end to end on both loaders, with no
edit anywhere else in the repository."""
import os

import pytest
import torch

import train_student
from dataset.augment import crop_and_flip, random_crops
from dataset.batch import BatchSpec, Views
from distiller_zoo import METHODS, Distiller, DistillKL, Needs
from distiller_zoo.base import LOGITS
from distiller_zoo.options import Option
from core.checkpoint import load_checkpoint
from core.util import positive_float
from conftest import REPO


class CropAndInverse(Views):
    """View 0: RepDistiller's crop and flip; view 1: another crop of the colour-inverted image,
    flipped upside down."""
    count = 2
    name = 'crop-and-inverse views'

    def make(self, images, draws):
        first = crop_and_flip(images, *random_crops(len(images), draws, images.device))
        second = crop_and_flip(255 - images, *random_crops(len(images), draws, images.device))
        return torch.stack([first, second.flip(2)], 1)


class ViewKD(Distiller):
    """CE and KD on the first view; KD at its own temperature on the second (one pass per
    view, so each has its own BatchNorm statistics)."""
    names = ('viewkd',)
    needs = Needs(weights=(0.5, 0.5, 1.0), teacher_reads=frozenset({LOGITS}),
                    batch=BatchSpec(views=CropAndInverse()))
    options = (Option('--view_T', type=positive_float, default=2.0,
                      help='viewkd: temperature on the second view'),)
    seen = []  # the shapes of the training batches, for the test to look at

    def __init__(self, student, teacher, config):
        super().__init__(student, teacher, config)
        self.second_view = DistillKL(config.options.view_T)

    def losses(self, s, t, batch):
        ViewKD.seen.append(tuple(batch.image.shape))
        terms = self.base_losses(s[0].logits, t[0].logits, batch.target)
        return s[0].logits, self.add_method_loss(terms, {
            'view': self.second_view(s[1].logits, t[1].logits)})


@pytest.mark.parametrize('loader', ['device', 'classic'])
def test_a_method_with_its_own_views_trains_on_both_loaders(tiny, monkeypatch, capsys, loader):
    data, teacher, root = tiny
    monkeypatch.setitem(METHODS, 'viewkd', ViewKD)
    ViewKD.seen.clear()
    save = str(root / loader)
    argv = ['--path_t', teacher, '--distill', 'viewkd', '--model_s', 'resnet8', '--view_T', '3',
            '--data_folder', data, '--save_dir', save, '--epochs', '2', '--batch_size', '16',
            '--num_workers', '0', '--loader', loader, '--seed', '5']
    assert train_student.main(argv) == 0
    out = capsys.readouterr().out
    assert 'weights -r 0.5 -a 0.5 -b 1.0' in out and 'kd_view' in out
    assert ViewKD.seen[0] == (16, 2, 3, 32, 32)  # every training batch: two views per image
    assert all(shape[1:] == (2, 3, 32, 32) for shape in ViewKD.seen)
    folder = os.path.join(save, 'student_model')
    (run,) = os.listdir(folder)
    assert run.endswith('_1_view_T:3.0')  # its option tells its runs apart
    assert load_checkpoint(os.path.join(folder, run, 'resnet8_last.pth'))['epoch'] == 2


def test_its_option_shows_in_its_help(monkeypatch, capsys):
    monkeypatch.setitem(METHODS, 'viewkd', ViewKD)
    with pytest.raises(SystemExit):
        train_student.parse_option(['--distill', 'viewkd', '--help'])
    help_text = capsys.readouterr().out
    assert 'options of --distill viewkd' in help_text and '--view_T' in help_text


@pytest.fixture
def readme_method():
    """docs/adding_a_method.py, imported (it registers --distill mykd) and unregistered after."""
    import importlib.util
    path = os.path.join(REPO, 'docs',
                        'adding_a_method.py')
    spec = importlib.util.spec_from_file_location('adding_a_method', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module, open(path).read()
    METHODS.pop('mykd')


def test_the_documented_method_is_a_file_that_trains(readme_method):
    from builders import build, fixed_batch
    module, source = readme_method
    guide = open(os.path.join(REPO, 'docs', 'adding_a_method.md')).read()
    assert source[source.index('import torch.nn'):] in guide  # the snippet is the file
    distiller, teacher, _ = build('mykd', teacher='resnet14', student='resnet8')
    assert distiller.embed.in_features == 64 and distiller.embed.out_features == 64
    distiller, teacher, _ = build('mykd', teacher='wrn_16_2', student='resnet8')
    assert distiller.embed.out_features == 128  # the teacher's width, not another
    x, y, index, _ = fixed_batch()
    from dataset.batch import Batch
    distiller.train()
    _, terms = distiller.forward_train(Batch(image=x, target=y, index=index))
    assert set(terms) == {'cls', 'div', 'kd'} and terms['kd'] > 0
    sum(terms.values()).backward()
    assert distiller.embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
