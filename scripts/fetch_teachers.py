"""Download RepDistiller's pretrained CIFAR-100 teachers into
``save/models/<name>_vanilla/ckpt_epoch_240.pth``.

RepDistiller's own links are tried first, then mirrors that serve the same files in an archive
(mdistiller's ``cifar_teachers.tar``, DIST_KD's ``cifar_ckpts.zip``). Downloads resume where a
previous attempt stopped; each teacher is checked to load as its named architecture before it
is moved into place.
"""
import argparse
import os
import shlex
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.util import UserError  # noqa: E402
from helper.teachers import PUBLISHED_TEACHERS as TEACHERS, load_teacher  # noqa: E402

FILE = 'ckpt_epoch_240.pth'
# (label, URL): a URL with '{name}' serves one teacher, otherwise it is an archive of them all.
SOURCES = [
    ('RepDistiller', 'http://shape2prog.csail.mit.edu/repo/{name}_vanilla/' + FILE),
    ('mdistiller', 'https://github.com/megvii-research/mdistiller/releases/download/'
                   'checkpoints/cifar_teachers.tar'),
    ('DIST_KD', 'https://github.com/hunto/DIST_KD/releases/download/v0.0.2/cifar_ckpts.zip'),
]
TIMEOUT = 30
CHUNK = 1 << 20


def download(url, dest):
    """Fetch ``url`` to ``dest``, continuing a partial ``dest.part`` with an HTTP range request;
    ``dest`` appears only once complete."""
    part = dest + '.part'
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            os.replace(part, dest)
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        total = have + int(response.headers.get('Content-Length') or 0)
        with open(part, 'ab' if have else 'wb') as f:
            done = have
            while chunk := response.read(CHUNK):
                f.write(chunk)
                done += len(chunk)
                if total and sys.stdout.isatty():
                    print(f'\r  {done / 1e6:.1f} / {total / 1e6:.1f} MB', end='', flush=True)
    if sys.stdout.isatty():
        print()
    os.replace(part, dest)


def find_member(names, teacher):
    """The archive member holding ``teacher``: a path with a ``<teacher>_...`` folder."""
    for member in names:
        parts = member.replace('\\', '/').split('/')
        if member.endswith('.pth') and any(p == teacher or p.startswith(teacher + '_')
                                           for p in parts[:-1]):
            return member
    return None


def extract(archive, teacher, dest):
    # Test for tar first: a tar of checkpoints (which are zip files) also looks like a zip.
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            member = find_member(t.getnames(), teacher)
            if member:
                with t.extractfile(member) as src, open(dest, 'wb') as out:
                    out.write(src.read())
    else:
        with zipfile.ZipFile(archive) as z:
            member = find_member(z.namelist(), teacher)
            if member:
                with z.open(member) as src, open(dest, 'wb') as out:
                    out.write(src.read())
    return member is not None


def fetch(teacher, root, train_flags=''):
    """Install ``teacher`` under ``root``; ``train_flags``: what the suggested train_teacher.py
    command needs besides the model (the --save_dir that was given)."""
    folder = os.path.join(root, f'{teacher}_vanilla')
    dest = os.path.join(folder, FILE)
    if os.path.isfile(dest):
        print(f'have {dest}')
        return True
    cache = os.path.join(root, '.downloads')
    os.makedirs(folder, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    staged = dest + '.tmp'  # in the teacher's folder, whose name tells its architecture
    problems = []
    for label, url in SOURCES:
        try:
            if '{name}' in url:
                print(f'fetching {teacher} from {label}', flush=True)
                download(url.format(name=teacher), staged)
            else:
                archive = os.path.join(cache, os.path.basename(url))
                if not os.path.isfile(archive):
                    print(f'fetching {os.path.basename(url)} from {label}', flush=True)
                    download(url, archive)
                if not extract(archive, teacher, staged):
                    problems.append(f'{label}: no {teacher} in {os.path.basename(url)}')
                    continue
        except (OSError, urllib.error.URLError, tarfile.TarError, zipfile.BadZipFile) as e:
            problems.append(f'{label}: {getattr(e, "reason", None) or e}')
            continue
        try:
            load_teacher(staged, 100, 'cifar100')
        except UserError as e:
            os.remove(staged)
            problems.append(f'{label}: {e}')
            continue
        os.replace(staged, dest)
        print(f'installed {dest} (from {label})')
        return True
    for empty in (folder, cache, root):  # leave no empty folder behind
        if os.path.isdir(empty) and not os.listdir(empty):
            os.rmdir(empty)
    print(f'could not fetch {teacher} ({"; ".join(problems)}). If you are offline, copy the '
          f'file to {dest} by hand, or train it: python train_teacher.py --model {teacher}'
          f'{train_flags}', file=sys.stderr)
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='*', default=TEACHERS, metavar='NAME',
                        help=f'teachers to fetch (default: {" ".join(TEACHERS)})')
    parser.add_argument('--save_dir', default='./save', help='root of save/models')
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in TEACHERS]
    if unknown:
        print(f'error: no published teacher {", ".join(unknown)}; choose from '
              f'{", ".join(TEACHERS)}', file=sys.stderr)
        return 2
    root = os.path.join(args.save_dir, 'models')
    train_flags = (f' --save_dir {shlex.quote(args.save_dir)}'
                   if os.path.normpath(args.save_dir) != 'save' else '')
    results = [fetch(name, root, train_flags) for name in args.names]
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
