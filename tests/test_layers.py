"""The folders are layers: a package imports only the layers below it, never one above, not even
inside a function body."""
import ast
import os

import pytest
from conftest import REPO

# The floors, from the ground up: each top-level folder (or entry-point module) imports only
# its own floor and those below it.
FLOORS = [('core',), ('models',), ('crd',), ('dataset',), ('distiller_zoo',), ('helper',),
          ('train_student', 'train_teacher', 'transfer_student', 'eval_student'),
          ('reproduction',), ('scripts',)]
PROJECT = tuple(name for floor in FLOORS for name in floor)


def floor_of(module):
    return next(i for i, floor in enumerate(FLOORS) if module.split('.')[0] in floor)


def imports(path, package):
    """Every project module ``path`` imports, wherever the import statement stands."""
    found = []
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
                found += [module] if node.module else [f'{module}.{a.name}' for a in node.names]
            else:
                found.append(node.module)
    return [m for m in found if m.split('.')[0] in PROJECT]


def modules(layer):
    """The Python files of a top-level folder (or the entry-point module of that name)."""
    if os.path.isfile(os.path.join(REPO, f'{layer}.py')):
        yield os.path.join(REPO, f'{layer}.py'), ''
        return
    for root, _, names in os.walk(os.path.join(REPO, layer)):
        for name in names:
            if name.endswith('.py'):
                yield os.path.join(root, name), os.path.relpath(root, REPO).replace(os.sep, '.')


@pytest.mark.parametrize('layer', PROJECT)
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = [(os.path.relpath(path, REPO), module)
             for path, package in modules(layer)
             for module in imports(path, package)
             if floor_of(module) > floor_of(layer)]
    assert not wrong, f'{layer} imports above itself: {wrong}'


def test_every_top_level_package_is_a_floor():
    packages = {name for name in os.listdir(REPO)
                if os.path.isfile(os.path.join(REPO, name, '__init__.py'))}
    assert packages <= set(PROJECT), packages - set(PROJECT)


def test_the_check_sees_imports_inside_functions(tmp_path):
    path = tmp_path / 'x.py'
    path.write_text('def f():\n    from helper.loops import Trainer\n    from . import base\n')
    assert imports(str(path), 'dataset') == ['helper.loops', 'dataset.base']
