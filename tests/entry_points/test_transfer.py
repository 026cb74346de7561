"""Linear-probe transfer of distilled students to STL-10 and TinyImageNet-200."""
import json
import os
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import train_student
import transfer_student
from dataset.stl10 import read_split, stl10_splits
from core.checkpoint import load_checkpoint
from scripts import summarize
from conftest import REPO, write_stl10



def test_stl10_binary_files_read_back_exactly(tmp_path):
    written = write_stl10(str(tmp_path))
    images, labels = read_split(str(tmp_path / 'stl10_binary'), 'train')
    assert np.array_equal(images, written['train'][0])
    assert np.array_equal(labels, written['train'][1])
    train, test = stl10_splits(str(tmp_path))
    assert train.images.shape == (24, 32, 32, 3) and len(test) == 16
    expected = np.asarray(Image.fromarray(written['test'][0][3]).resize((32, 32), Image.BILINEAR))
    assert np.array_equal(test.images[3], expected)


@pytest.fixture(scope='module')
def students(tiny):
    """A vanilla resnet8 (a teacher run) and a SimKD resnet8 student, trained on tiny data."""
    data, vanilla, root = tiny
    save = str(root / 'save')
    assert train_student.main(['--path_t', vanilla, '--distill', 'simkd', '--model_s', 'resnet8',
                               '--data_folder', data, '--save_dir', save, '--epochs', '1',
                               '--batch_size', '16', '--num_workers', '0']) == 0
    folder = os.path.join(save, 'student_model')
    simkd = os.path.join(folder, os.listdir(folder)[0], 'resnet8_last.pth')
    return root, vanilla, simkd


def probe(root, student, dataset, data, trial, extra=()):
    save = str(root / 'probe_save')
    argv = ['--path_s', student, '--dataset', dataset, '--data_folder', data, '--save_dir',
            save, '--epochs', '2', '--batch_size', '8', '--num_workers', '0', '--trial', trial,
            *extra]
    assert transfer_student.main(argv) == 0
    folder = os.path.join(save, 'transfer')
    run = next(os.path.join(folder, r) for r in os.listdir(folder) if r.endswith(f'_{trial}'))
    return save, run


def test_probe_trains_the_new_layer_and_leaves_the_backbone(students, capsys):
    root, vanilla, _ = students
    data = str(root / 'stl')
    write_stl10(data)
    save, run = probe(root, vanilla, 'stl10', data, 'vanilla')
    out = capsys.readouterr().out
    assert 'linear probe of resnet8' in out and '64 features -> 10 classes' in out
    before = load_checkpoint(vanilla)['model']
    after = load_checkpoint(os.path.join(run, 'resnet8_last.pth'))
    for key, value in before.items():
        if 'running' in key or 'num_batches' in key:
            continue  # BN statistics adapt to the new data, as in the authors' script
        if not key.startswith('fc.'):
            assert torch.equal(after['model'][key], value), key
    assert after['probe']['weight'].shape == (10, 64)
    assert after['probe']['weight'].std() > 0.011  # trained away from its N(0, 0.01) start
    metrics = [json.loads(line) for line in open(os.path.join(run, 'metrics.jsonl'))]
    assert len(metrics) == 2 and 'test_top1' in metrics[0]
    summary = json.load(open(os.path.join(run, 'summary.json')))
    assert summary['args']['dataset'] == 'stl10' and summary['student'] == 'resnet8'
    runs = summarize.read_runs(os.path.join(save, 'transfer'))
    header, rows = summarize.build_table(runs, [], 'last')
    assert header[1:] == ['- -> resnet8'] and ['vanilla', f'{summary["last_acc"]:.2f}'] in rows


def test_probe_reads_the_features_a_simkd_student_predicts_from(students, capsys):
    root, _, simkd = students
    data = str(root / 'stl')
    write_stl10(data)
    probe(root, simkd, 'stl10', data, 'simkd')
    assert '64 features -> 10 classes' in capsys.readouterr().out  # the projector's output


def write_tinyimagenet_zip(path, wnids=('n01443537', 'n01629819'), per_class=3):
    """TinyImageNet's zip layout: train/<wnid>/images/*.JPEG and val/images/*.JPEG with
    val/val_annotations.txt naming each validation image's class."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, 'w') as z:
        def image(name):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            from io import BytesIO
            buffer = BytesIO()
            Image.fromarray(pixels).save(buffer, format='JPEG')
            z.writestr(name, buffer.getvalue())
        annotations = []
        for wnid in wnids:
            for i in range(per_class):
                image(f'tiny-imagenet-200/train/{wnid}/images/{wnid}_{i}.JPEG')
                image(f'tiny-imagenet-200/val/images/val_{wnid}_{i}.JPEG')
                annotations.append(f'val_{wnid}_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n')
        z.writestr('tiny-imagenet-200/val/val_annotations.txt', ''.join(annotations))
        z.writestr('tiny-imagenet-200/wnids.txt', '\n'.join(wnids) + '\n')


def test_tinyimagenet_script_lays_out_validation_classes_and_probe_runs(students, tmp_path,
                                                                         capsys):
    root, vanilla, _ = students
    data = tmp_path / 'data'
    archive = tmp_path / 'tiny-imagenet-200.zip'
    write_tinyimagenet_zip(str(archive))
    for _ in range(2):  # a second run changes nothing
        subprocess.run(['bash', os.path.join(REPO, 'scripts', 'get_tinyimagenet.sh'), str(data),
                        str(archive)], check=True, capture_output=True)
    val = data / 'tiny-imagenet-200' / 'val'
    assert sorted(os.listdir(val)) == ['n01443537', 'n01629819', 'val_annotations.txt']
    assert len(os.listdir(val / 'n01443537')) == 3
    probe(root, vanilla, 'tinyimagenet', str(data), 'tin')
    assert '64 features -> 200 classes' in capsys.readouterr().out


def test_only_transfer_targets(students, capsys):
    root, vanilla, _ = students
    assert transfer_student.main(['--path_s', vanilla, '--dataset', 'cifar10']) == 2
    assert 'stl10, tinyimagenet' in capsys.readouterr().err
