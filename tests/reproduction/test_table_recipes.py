"""The tables' recipes and statistics against their sources' own files: what a cell runs is
what the source's config or log says, and a figure copied from another source carries that
source's statistic. The expected values are transcribed from the files each test names."""
import glob
import os
import tomllib

import pytest

from conftest import REPO
from reproduction.tables import STUDENT, TEACHER, Table, _parse, _values

TABLES = sorted(glob.glob(os.path.join(REPO, 'tables', '*.toml')))
REPDISTILLER = ('repdistiller_same', 'repdistiller_cross')


def table(name):
    return Table(os.path.join(REPO, 'tables', f'{name}.toml'))


def options(tab, cell):
    """The options a cell's first trial runs with (every default and per-pair value filled
    in)."""
    script, argv = tab.cell_argv(cell, 1, './save', './data')
    return _values(_parse(script, argv))


def cells(tab, row):
    return [c for c in tab.cells if c.row == row and c.measured]


def figures(path):
    """``{(teacher, student, row, figure): statistic}`` of a table file's top-1 figures, read
    as the table reads them (a row's statistic over the table's, a pair's over the row's)."""
    data = tomllib.load(open(path, 'rb'))
    columns = [(p['teacher'], p['student'], probe, metric) for p in data['pairs']
               for probe in data.get('probes', [None]) for metric in data.get('metrics', ['top1'])]
    found = {}
    for key, row in data['rows'].items():
        for (teacher, student, probe, metric), value in zip(columns, row['published']):
            if isinstance(value, (int, float)) and metric == 'top1' and probe is None:
                found[(teacher, student, key, float(value))] = row.get('pair_statistic', {}).get(
                    f'{teacher}:{student}', row.get('statistic', data.get('statistic', 'last')))
    return found


def test_every_copy_of_a_repdistiller_figure_is_its_last_epoch():
    """RepDistiller's figures are last-epoch (HobbitLong/RepDistiller issue #16): a cell of
    another table with the same pair, row and figure quotes it, and says "last"."""
    quoted = {}
    for name in REPDISTILLER:
        quoted.update(figures(os.path.join(REPO, 'tables', f'{name}.toml')))
    assert set(quoted.values()) == {'last'}
    copies = 0
    for path in TABLES:
        if os.path.basename(path)[:-5] in REPDISTILLER:
            continue
        for cell, statistic in figures(path).items():
            if cell in quoted:
                copies += 1
                assert statistic == 'last', (os.path.basename(path), cell)
    assert copies > 300  # the copies are many: KD rows, the TTM tables' baselines, ...
    # the reader reads as the tables do
    assert figures(os.path.join(REPO, 'tables', 'lskd_cross.toml'))[
        ('resnet32x4', 'ShuffleV2', 'kd', 74.45)] == 'last'
    cell = next(c for c in table('lskd_cross').cells if c.row == 'kd' and c.student == 'ShuffleV2')
    assert cell.statistic == 'last'


# LSKD's MLKD configs (logit-standardization-KD f6e5aa5, configs/cifar100/mlkd/*.yaml): lr and
# epochs per pair
LSKD_MLKD = {
    'resnet32x4:resnet8x4': (0.025, 480), 'vgg13:vgg8': (0.01, 480),
    'wrn_40_2:wrn_40_1': (0.025, 480), 'wrn_40_2:wrn_16_2': (0.025, 480),
    'resnet56:resnet20': (0.025, 480), 'resnet110:resnet32': (0.025, 480),
    'resnet110:resnet20': (0.025, 480), 'resnet32x4:ShuffleV2': (0.01, 960),
    'resnet32x4:wrn_16_2': (0.025, 480), 'resnet32x4:wrn_40_2': (0.025, 480),
    'wrn_40_2:resnet8x4': (0.025, 480), 'wrn_40_2:MobileNetV2': (0.005, 480),
    'vgg13:MobileNetV2': (0.01, 480), 'ResNet50:MobileNetV2': (0.01, 480)}


@pytest.mark.parametrize('name', ['lskd', 'lskd_cross'])
def test_lskd_mlld_cells_run_the_authors_mlkd_configs(name):
    tab = table(name)
    for cell in cells(tab, 'mlld_ls'):
        opt = options(tab, cell)
        assert (opt['learning_rate'], opt['epochs']) == LSKD_MLKD[
            f'{cell.teacher}:{cell.student}'], cell.where
    # the MLKD baseline has no config of MLLD's own for wrn_40_2 -> MobileNetV2: LSKD's
    for cell in cells(tab, 'mlkd'):
        if (cell.teacher, cell.student) == ('wrn_40_2', 'MobileNetV2'):
            assert options(tab, cell)['learning_rate'] == 0.005


@pytest.mark.parametrize('name', ['lskd', 'lskd_cross'])
def test_ctkd_ls_runs_the_bounds_its_logs_imply_and_its_weight(name):
    tab = table(name)
    for cell in cells(tab, 'ctkd_ls'):
        opt = options(tab, cell)
        assert (opt['ctkd_t_start'], opt['ctkd_t_end'], opt['alpha']) == (2.0, 40.0, 9.0)
    for cell in cells(tab, 'ctkd'):  # the CTKD README's runs: CTKD's own bounds
        assert (options(tab, cell)['ctkd_t_start'], options(tab, cell)['ctkd_t_end']) == (
            1.0, 20.0)


def test_dkd_ls_beta_is_the_log_names_and_records_the_configs():
    """The log names' beta (times the weight) runs; the configs' values are recorded."""
    tab = table('lskd')
    betas = {f'{c.teacher}:{c.student}': options(tab, c)['dkd_beta'] / options(tab, c)[
        'dkd_alpha'] for c in cells(tab, 'dkd_ls')}
    assert betas == {'resnet32x4:resnet8x4': 8.0, 'vgg13:vgg8': 2.0, 'wrn_40_2:wrn_40_1': 2.0,
                     'wrn_40_2:wrn_16_2': 2.0, 'resnet56:resnet20': 2.0,
                     'resnet110:resnet32': 2.0, 'resnet110:resnet20': 2.0}
    assert 'BETA 6.0' in tab.row_notes['DKD+LS']
    from distiller_zoo.pairs import pair_settings
    assert pair_settings('lskd', 'dkd', 'vgg13', 'vgg8')['config_beta'] == 6


def test_ctkd_imagenet_dkd_rows_take_the_scripts_dkd_line():
    """run_imagenet_distill.sh line 14 (CTKD 7d52522): --dkd_alpha 1 --dkd_beta 1; the CTKD
    rows' curriculum is line 25's (5 epochs), which the script's broken line 24 never passes.
    TTM's ImageNet table quotes the same DKD+CTKD run."""
    for name, rows in (('ctkd_imagenet', ('dkd', 'dkd_ctkd')), ('ttm_imagenet', ('ctkd',))):
        tab = table(name)
        for row in rows:
            for cell in cells(tab, row):
                opt = options(tab, cell)
                assert (opt['dkd_alpha'], opt['dkd_beta'], opt['dkd_T']) == (1.0, 1.0, 4.0)
                if opt.get('ctkd'):
                    assert opt['ctkd_lambda_epochs'] == 5


def test_sdd_nkd_cells_take_the_configs_dkd_beta_as_gamma():
    tab = table('sdd')
    for row in ('nkd', 'sdd_nkd'):
        gammas = {f'{c.teacher}:{c.student}': options(tab, c)['sdd_nkd_gamma']
                  for c in cells(tab, row)}
        assert gammas == {'resnet32x4:ShuffleV1': 8.0, 'wrn_40_2:ShuffleV1': 8.0,
                          'ResNet50:MobileNetV2': 8.0, 'vgg13:MobileNetV2': 6.0,
                          'resnet32x4:ShuffleV2': 8.0, 'ResNet50:vgg8': 8.0}, row
    # ImageNet: configs/imagenet/r50_mv2/sdd_nkd.yaml's DKD section (T 1, BETA 2, warm-up 1)
    tab = table('sdd_imagenet')
    cell = cells(tab, 'sdd_nkd')[0]  # its top-1 and top-5 cells are one run
    opt = options(tab, cell)
    assert (opt['sdd_nkd_T'], opt['sdd_nkd_gamma'], opt['sdd_warmup']) == (1.0, 2.0, 1)


def test_cls_kds_resnet50_mobilenet_nkd_clips_the_gradient_norm_wherever_it_is_quoted():
    """res50_distill_mv1_img.py (cls_KD 1e5d48f) clips at max_norm 5; ResNet-34 -> ResNet-18
    and the students alone do not."""
    for name in ('nkd_imagenet', 'ttm_imagenet', 'sdd_imagenet'):
        tab = table(name)
        for cell in cells(tab, 'nkd'):
            clip = 5.0 if cell.student == 'MobileNetV1' else None
            assert options(tab, cell)['max_grad_norm'] == clip, cell.where
    tab = table('nkd_imagenet')
    assert all(options(tab, c)['max_grad_norm'] is None for c in cells(tab, STUDENT))


@pytest.mark.parametrize('name, aggregate, trials', [
    ('ofd_cifar', 'median', 5),  # clovaai/overhaul-distillation issue #9
    ('mdistiller', 'mean', 5),  # the DKD paper, quoted in mdistiller issue #30 (and #42)
    ('mdistiller_imagenet', 'mean', 3)])
def test_run_counts_and_aggregates_are_the_sources(name, aggregate, trials):
    tab = table(name)
    assert tab.trials == trials
    assert {c.aggregate for c in tab.cells if c.row != TEACHER} == {aggregate}
