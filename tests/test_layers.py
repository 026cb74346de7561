"""The folders are layers: a package imports only the layers below it, never one above, not even
inside a function body."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each layer and the project layers it may import (its own included).
ALLOWED = {
    'helper.core': {'helper.core'},
    'models': {'helper.core', 'models'},
    'crd': {'helper.core', 'models', 'crd'},
    'dataset': {'helper.core', 'dataset'},
    'distiller_zoo': {'helper.core', 'models', 'crd', 'dataset', 'distiller_zoo'},
    'helper': {'helper.core', 'models', 'crd', 'dataset', 'distiller_zoo', 'helper'},
    # above the entry points: it parses their options and finds their run folders
    'reproduction': {'helper.core', 'models', 'crd', 'dataset', 'distiller_zoo', 'helper',
                     'train_student', 'train_teacher', 'transfer_student', 'scripts',
                     'reproduction'},
}
PROJECT = ('helper', 'models', 'crd', 'dataset', 'distiller_zoo', 'scripts', 'train_student',
           'train_teacher', 'eval_student', 'transfer_student', 'reproduction')


def layer_of(module):
    return 'helper.core' if module.startswith('helper.core') else module.split('.')[0]


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
    folder = os.path.join(REPO, *layer.split('.'))
    for root, dirs, names in os.walk(folder):
        if layer == 'helper':
            dirs[:] = [d for d in dirs if d != 'core']
        for name in names:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                package = os.path.relpath(root, REPO).replace(os.sep, '.')
                yield path, package


@pytest.mark.parametrize('layer', sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = [(os.path.relpath(path, REPO), module)
             for path, package in modules(layer)
             for module in imports(path, package)
             if layer_of(module) not in ALLOWED[layer]]
    assert not wrong, f'{layer} imports above itself: {wrong}'


def test_the_check_sees_imports_inside_functions(tmp_path):
    path = tmp_path / 'x.py'
    path.write_text('def f():\n    from helper.loops import Trainer\n    from . import base\n')
    assert imports(str(path), 'dataset') == ['helper.loops', 'dataset.base']
