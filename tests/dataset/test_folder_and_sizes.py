"""A user's own data set (``--dataset folder``: class folders of images the test writes), its
bad inputs, ``--img_size`` (32x32 data resized batch by batch, folder sets by their
transforms), and TinyImageNet at 64x64 as mdistiller trains on it."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import train_student
import train_teacher
from conftest import write_cifar100, write_imagenet
from dataset import DatasetError, build_loaders, data_source
from dataset.tinyimagenet import MEAN, STD_64


@pytest.fixture
def folder(tmp_path):
    write_imagenet(str(tmp_path), classes=('cat', 'dog', 'eel'), per_class=3,
                   size=[(40, 60), (70, 50)])
    return str(tmp_path / 'imagenet')


def test_a_folder_set_is_read_with_its_classes_listed_once(folder, caplog):
    source = data_source('folder', folder)
    assert source.num_classes == 3 and source.input_size == 224
    with caplog.at_level('INFO'):
        train, test = build_loaders('folder', folder, batch_size=4, loader='classic', seed=0)
    assert [m for m in caplog.messages if 'classes' in m] == [
        f"folder data set '{folder}': 3 classes (cat, dog, eel); train 9 images, val 9 images"]
    batch = next(iter(train))
    assert batch.image.shape == (4, 3, 224, 224)
    assert sorted(test.dataset.targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    small = build_loaders('folder', folder, batch_size=4, loader='classic', img_size=32)[1]
    assert next(iter(small)).image.shape == (2, 3, 32, 32)  # the test batch is half


def test_a_folder_set_names_an_empty_class_an_unreadable_image_and_a_missing_split(folder):
    os.makedirs(os.path.join(folder, 'train', 'fox'))
    os.makedirs(os.path.join(folder, 'val', 'fox'))
    with pytest.raises(DatasetError, match='no valid file for the classes fox'):
        build_loaders('folder', folder)
    with open(os.path.join(folder, 'train', 'fox', 'broken.jpg'), 'w') as f:
        f.write('not an image')
    os.rename(os.path.join(folder, 'val', 'cat', '0.JPEG'),
              os.path.join(folder, 'val', 'fox', '0.JPEG'))
    with pytest.raises(DatasetError, match="cannot read '.*fox/broken.jpg'"):
        build_loaders('folder', folder)
    os.rename(os.path.join(folder, 'val', 'fox'), os.path.join(folder, 'val', 'wolf'))
    with pytest.raises(DatasetError, match='hold different classes'):
        build_loaders('folder', folder)
    with pytest.raises(DatasetError, match="'.*nowhere/train' not found"):
        data_source('folder', os.path.join(folder, 'nowhere'))


def test_img_size_resizes_32x32_batches_on_the_device(tmp_path):
    write_cifar100(str(tmp_path), n_train=8, n_test=4)
    plain, _ = build_loaders('cifar100', str(tmp_path), batch_size=4, seed=5)
    large, large_test = build_loaders('cifar100', str(tmp_path), batch_size=4, seed=5,
                                      img_size=64)
    a, b = next(iter(plain)), next(iter(large))
    assert b.image.shape == (4, 3, 64, 64) and next(iter(large_test)).image.shape[-1] == 64
    # the same crops, then resized (bilinear)
    expected = torch.nn.functional.interpolate(a.image, size=(64, 64), mode='bilinear',
                                               align_corners=False)
    assert torch.equal(b.image, expected) and torch.equal(a.target, b.target)
    assert data_source('cifar100', img_size=64).codable  # CKD and the cache still apply


def test_tinyimagenet64_keeps_64x64_and_trains_mdistillers_dot_pair(tmp_path):
    root = str(tmp_path)
    write_imagenet(root, classes=('n01443537', 'n01629819'), per_class=4, size=(64, 64))
    os.rename(os.path.join(root, 'imagenet'), os.path.join(root, 'tiny-imagenet-200'))
    source = data_source('tinyimagenet64', root)
    assert source.num_classes == 200 and source.input_size == 64
    assert [type(t).__name__ for t in source.image_transform(True).transforms] == [
        'RandomRotation', 'RandomHorizontalFlip'] and source.image_transform(False) is None
    train, test = build_loaders('tinyimagenet64', root, batch_size=4, loader='classic', seed=0)
    assert next(iter(train)).image.shape == (4, 3, 64, 64)
    batch = next(iter(test))  # as the images are, normalised with mdistiller's statistics
    path = os.path.join(root, 'tiny-imagenet-200', 'val', 'n01443537', '0.JPEG')
    pixels = torch.from_numpy(np.array(Image.open(path).convert('RGB'))).permute(2, 0, 1) / 255
    expected = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD_64)[:, None, None]
    assert torch.allclose(batch.image[0], expected, atol=1e-5)

    save = str(tmp_path / 'save')
    common = ['--dataset', 'tinyimagenet64', '--data_folder', root, '--save_dir', save,
              '--epochs', '1', '--batch_size', '4', '--num_workers', '0']
    assert train_teacher.main(['--model', 'resnet8'] + common) == 0
    teacher = os.path.join(save, 'models', 'resnet8_tinyimagenet64_lr_0.05_decay_0.0005_trial_0',
                           'resnet8_last.pth')
    assert train_student.main(['--path_t', teacher, '--model_s', 'MobileNetV2_TinyImagenet',
                               '--distill', 'kd', '--optimizer', 'dot'] + common) == 0
    [run] = os.listdir(os.path.join(save, 'student_model'))
    summary = json.load(open(os.path.join(save, 'student_model', run, 'summary.json')))
    assert summary['student_params'] == 2497480 and 0 <= summary['teacher_top5'] <= 100
