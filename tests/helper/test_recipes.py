"""The recipes papers train with (--recipe, timm's factories): the values they set and the
flags that override them, timm's optimizer and cosine schedule as the OFA-KD authors' timm
builds them, label smoothing, mixup/CutMix and random erasing drawn from the loader's stream,
and a recipe run that resumes exactly."""
import math

import pytest
import torch
import torch.nn as nn

import train_student
import train_teacher
from core.config import Augmentation, TrainingConfig
from dataset.loaders import BatchAugment
from helper.optimizers import learning_rate_schedule, strategy_of
from runs import straight_and_resumed


def config(tiny, *flags):
    return train_student.parse_option(['--path_t', tiny[1], '--data_folder', tiny[0],
                                       *flags])


def test_a_recipe_sets_its_values_and_a_given_flag_wins(tiny):
    c = config(tiny, '--recipe', 'ofa_vit', '--mixup', '0.2', '--epochs', '5')
    t, d = c.training, c.data
    assert (t.opt, t.schedule, t.learning_rate, t.weight_decay, t.warmup_epochs, t.min_lr,
            t.max_grad_norm, t.epochs) == ('adamw', 'cosine', 5e-4, 0.05, 20, 1e-5, 5.0, 5)
    assert d.augment == Augmentation(mixup=0.2, cutmix=1.0, smoothing=0.1, reprob=0.25,
                                     randaugment='rand-m9-mstd0.5-inc1')
    assert d.img_size == 224 and c.method.smoothing == 0.0  # the mixed labels carry it
    cnn = config(tiny, '--recipe', 'ofa_cnn')
    assert cnn.method.smoothing == 0.1 and cnn.data.augment is None
    assert cnn.training.opt == 'sgd' and cnn.data.batch_size == 128
    plain = config(tiny)
    assert (plain.training.opt, plain.training.schedule, plain.data.augment) == (None, 'step',
                                                                                 None)
    teacher = train_teacher.parse_option(['--recipe', 'ofa_cnn', '--model', 'resnet8'])
    assert teacher.opt == 'sgd' and teacher.smoothing == 0.1 and teacher.epochs == 300


@pytest.mark.parametrize('flags, message', [
    (['--opt', 'sgdd'], "timm has no optimizer 'sgdd'"),
    (['--randaugment', 'bad'], "'bad' is not a RandAugment config"),
    (['--recipe', 'ofa'], "invalid choice: 'ofa'"),
    (['--warmup_epochs', '5'], '--warmup_epochs is not read by --schedule step'),
    (['--recipe', 'ofa_cnn', '--lr_decay_epochs', '30,60'],
     '--lr_decay_epochs is not read by --schedule cosine')])
def test_impossible_recipe_values_are_refused_at_parse_time(tiny, flags, message, capsys):
    assert train_student.main(['--path_t', tiny[1], '--data_folder', tiny[0], *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_timms_optimizer_spares_biases_and_norms_and_sgd_is_nesterov():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    training = TrainingConfig(epochs=10, learning_rate=0.05, lr_decay_epochs=(),
                              lr_decay_rate=0.1, weight_decay=2e-3, momentum=0.9, save_freq=1,
                              opt='sgd', schedule='cosine', warmup_epochs=3, warmup_lr=1e-4,
                              min_lr=1e-3)
    optimizer = strategy_of(training).build(model.parameters(), training, torch.device('cpu'))
    decayed, spared = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.SGD) and decayed['nesterov']
    assert [p.ndim for p in decayed['params']] == [4, 2] and decayed['weight_decay'] == 2e-3
    assert all(p.ndim == 1 for p in spared['params']) and spared['weight_decay'] == 0
    # timm's cosine schedule (warm-up not prefixed), epoch by epoch from 1
    schedule = learning_rate_schedule(training, optimizer)
    rates = [schedule(epoch) for epoch in range(1, 11)]
    warm = [1e-4 + t * (0.05 - 1e-4) / 3 for t in range(3)]
    cosine = [1e-3 + 0.5 * (0.05 - 1e-3) * (1 + math.cos(math.pi * t / 10)) for t in range(3, 10)]
    assert rates == pytest.approx(warm + cosine)
    assert schedule(4) == pytest.approx(cosine[0])  # stateless: a resumed run gets the same


def test_mixup_and_random_erasing_draw_from_the_loaders_stream():
    augment = BatchAugment(Augmentation(mixup=0.8, cutmix=1.0, smoothing=0.1, reprob=0.5), 5,
                           torch.device('cpu'))
    image, target = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    runs = [augment(image, target, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    (a, hard, soft), (b, _, soft_b), (c, _, _) = runs
    assert torch.equal(a, b) and torch.equal(soft, soft_b) and not torch.equal(a, c)
    assert torch.allclose(soft.sum(1), torch.ones(6)) and torch.equal(hard, soft.argmax(1))
    assert soft.min() > 0  # smoothed
    assert not torch.equal(a, image) and torch.equal(image, image.clone())  # input untouched


def test_a_recipe_run_with_mixup_and_erasing_resumes_exactly(tiny, monkeypatch, capsys):
    flags = ['--recipe', 'ofa_cnn', '--img_size', '32', '--mixup', '0.8', '--reprob', '0.25',
             '--batch_size', '16', '--epochs', '3', '--warmup_epochs', '1']
    straight_and_resumed(tiny, monkeypatch, capsys, 'kd', flags, 5, 'recipe')


def test_randaugment_switches_to_the_classic_loader_and_is_seeded(tmp_path, caplog):
    from conftest import write_cifar100
    from dataset import build_loaders
    write_cifar100(str(tmp_path), n_train=8, n_test=4)
    augment = Augmentation(randaugment='rand-m9-mstd0.5-inc1')
    batches = []
    for _ in range(2):
        with caplog.at_level('WARNING'):
            train, _ = build_loaders('cifar100', str(tmp_path), batch_size=8, seed=3,
                                     augment=augment)
        batches.append(next(iter(train)).image)
    assert 'using --loader classic' in caplog.text and type(train).__name__ == 'ClassicLoader'
    plain = next(iter(build_loaders('cifar100', str(tmp_path), batch_size=8, seed=3,
                                    loader='classic')[0])).image
    assert torch.equal(batches[0], batches[1]) and not torch.equal(batches[0], plain)
