"""scripts/fetch_teachers.py against a local HTTP server (loopback only)."""
import http.server
import io
import os
import tarfile
import threading

import pytest
import torch

from core.checkpoint import load_checkpoint
from models import get_model
from scripts import fetch_teachers


class RangeHandler(http.server.BaseHTTPRequestHandler):
    files = {}  # path -> bytes
    served = []  # bytes sent per request

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if 'Range' in self.headers:
            start = int(self.headers['Range'].split('=')[1].split('-')[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])
        self.served.append(len(body) - start)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.files, RangeHandler.served = {}, []
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


def checkpoint_bytes(model_name):
    buffer = io.BytesIO()
    torch.save({'model': get_model(model_name, 100).state_dict(), 'epoch': 240}, buffer)
    return buffer.getvalue()


def tar_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def use_sources(monkeypatch, base):
    monkeypatch.setattr(fetch_teachers, 'SOURCES', [
        ('RepDistiller', base + '/repo/{name}_vanilla/ckpt_epoch_240.pth'),
        ('mdistiller', base + '/cifar_teachers.tar'),
    ])


def test_falls_back_to_the_archive_mirror_and_verifies(server, monkeypatch, tmp_path, capsys):
    use_sources(monkeypatch, server)
    RangeHandler.files['/cifar_teachers.tar'] = tar_bytes({
        'cifar_teachers/resnet56_vanilla/ckpt_epoch_240.pth': checkpoint_bytes('resnet56')})
    assert fetch_teachers.main(['resnet56', '--save_dir', str(tmp_path)]) == 0
    dest = tmp_path / 'models' / 'resnet56_vanilla' / 'ckpt_epoch_240.pth'
    get_model('resnet56', 100).load_state_dict(load_checkpoint(str(dest))['model'])
    assert 'installed' in capsys.readouterr().out and not os.path.exists(str(dest) + '.tmp')
    assert fetch_teachers.main(['resnet56', '--save_dir', str(tmp_path)]) == 0
    assert 'have ' in capsys.readouterr().out


def test_direct_link_and_resumed_download(server, monkeypatch, tmp_path):
    use_sources(monkeypatch, server)
    body = checkpoint_bytes('resnet56')
    RangeHandler.files['/repo/resnet56_vanilla/ckpt_epoch_240.pth'] = body
    folder = tmp_path / 'models' / 'resnet56_vanilla'
    folder.mkdir(parents=True)
    half = len(body) // 2
    (folder / 'ckpt_epoch_240.pth.tmp.part').write_bytes(body[:half])  # an interrupted attempt
    assert fetch_teachers.main(['resnet56', '--save_dir', str(tmp_path)]) == 0
    assert RangeHandler.served == [len(body) - half]  # only the missing part was sent
    assert (folder / 'ckpt_epoch_240.pth').read_bytes() == body


def test_wrong_architecture_is_rejected(server, monkeypatch, tmp_path, capsys):
    use_sources(monkeypatch, server)
    RangeHandler.files['/repo/vgg13_vanilla/ckpt_epoch_240.pth'] = checkpoint_bytes('vgg8')
    assert fetch_teachers.main(['vgg13', '--save_dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'does not match architecture vgg13' in err and 'train_teacher.py --model vgg13' in err
    assert not (tmp_path / 'models' / 'vgg13_vanilla').exists()  # no empty folder left


def test_offline_gives_a_clear_message(monkeypatch, tmp_path, capsys):
    use_sources(monkeypatch, 'http://127.0.0.1:9')  # nothing listens on the discard port
    assert fetch_teachers.main(['resnet110', '--save_dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'could not fetch resnet110' in err and 'If you are offline' in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'models').exists()  # no empty folder left, nor its download cache
    assert f'python train_teacher.py --model resnet110 --save_dir {tmp_path}' in err


def test_unknown_teacher(capsys):
    assert fetch_teachers.main(['resnet9000']) == 2
    assert 'no published teacher resnet9000' in capsys.readouterr().err
