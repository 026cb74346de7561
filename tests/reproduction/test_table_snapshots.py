"""Every table with a ``snapshot`` holds its source's table complete to the cell: each row of
the stored copy of the source (tables/snapshots/) is a row of the table, with the same figures
in the same columns. An edit that breaks a figure, drops a row or shifts a column fails here."""
import glob
import os
import tomllib

import pytest

from conftest import REPO
from reproduction.tables import snapshot_columns, snapshot_rows

TABLES = [path for path in sorted(glob.glob(os.path.join(REPO, 'tables', '*.toml')))
          if 'snapshot' in tomllib.load(open(path, 'rb'))]


def figure(value):
    return 'N/A' if isinstance(value, str) and value.upper() == 'N/A' else float(value)


def test_the_sources_with_a_copy_are_these():
    assert [os.path.basename(p) for p in TABLES] == [
        'ctkd.toml', 'ctkd_imagenet.toml', 'dist_kd.toml', 'dist_kd_imagenet.toml',
        'dist_kd_imagenet_teachers.toml', 'distillers.toml', 'distillers_cross.toml',
        'distillers_transfer.toml', 'lskd.toml', 'lskd_cross.toml', 'luminet.toml',
        'mdistiller.toml',
        'mdistiller_imagenet.toml', 'mdistiller_tinyimagenet.toml', 'mlld.toml',
        'nkd_deit.toml', 'nkd_imagenet.toml', 'ofd_cifar.toml', 'ofd_imagenet.toml',
        'repdistiller_cross.toml', 'repdistiller_same.toml', 'sdd.toml', 'sdd_imagenet.toml',
        'simkd.toml', 'skd.toml', 'srd_seed.toml',
        'ttm_cross.toml', 'ttm_deit.toml', 'ttm_imagenet.toml', 'ttm_same.toml']


def snapshots(table):
    names = table['snapshot']
    return [os.path.join(REPO, 'tables', name)
            for name in ([names] if isinstance(names, str) else names)]


@pytest.mark.parametrize('path', TABLES, ids=os.path.basename)
def test_a_tables_figures_are_its_sources(path):
    table = tomllib.load(open(path, 'rb'))
    rows = {row.get('snapshot_label', row['label']): row for row in table['rows'].values()}
    columns = table.get('snapshot_columns', len(table['pairs']) * len(
        table.get('probes', [None])) * len(table.get('metrics', ['top1'])))
    for snapshot in snapshots(table):
        if table.get('snapshot_transposed'):
            continue
        for label, values in snapshot_rows(snapshot).items():
            if label in table.get('snapshot_left_out', ()):
                assert label not in rows, label
                continue
            assert label in rows, f'{label}: in the source, not in the table'
            assert len(values) == columns, label
            published = rows[label]['published'][:columns]
            assert [figure(v) for v in published] == [figure(v) for v in values], label


@pytest.mark.parametrize('path', [p for p in TABLES if 'snapshot_transposed' in open(p).read()],
                         ids=os.path.basename)
def test_a_transposed_source_has_the_tables_rows_as_its_columns_in_order(path):
    table = tomllib.load(open(path, 'rb'))
    [snapshot] = snapshots(table)
    rows = list(table['rows'].values())
    source = snapshot_columns(snapshot)
    assert len(source) == len(rows)
    for row, (label, values) in zip(rows, source):
        assert row.get('snapshot_label', row['label']) == label
        assert [figure(v) for v in row['published']] == [figure(v) for v in values], label


def test_the_reproducing_guide_lists_every_table():
    guide = open(os.path.join(REPO, 'docs', 'reproducing.md')).read()
    listed = guide[guide.index('The tables (`tables/*.toml`'):guide.index('Left out, and why')]
    for path in glob.glob(os.path.join(REPO, 'tables', '*.toml')):
        name = os.path.splitext(os.path.basename(path))[0]
        assert f'`{name}`' in listed, name
