#!/usr/bin/env python3
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run `ansible-test sanity` on library/, module_utils/, connection_plugins/ and filter_plugins/.

ansible-test only checks collections, and this project is not one: its playbooks find the modules
through ansible.cfg (`library`, `module_utils`, `connection_plugins`). So this script generates a
collection at test time, `build/sanity/ansible_collections/l4lb/lab/`, with copies of the real
files (the directory gets its own `git init`: build/ is ignored by the project's git):

    library/*.py            -> plugins/modules/
    module_utils/**         -> plugins/module_utils/
    connection_plugins/*.py -> plugins/connection/
    filter_plugins/*.py     -> plugins/filter/

The one change made to the copies: the project's own imports, `ansible.module_utils.l4lb...` and
`ansible.module_utils.lab_topology`, are rewritten to the collection's
`ansible_collections.l4lb.lab.plugins.module_utils...` (what ansible-test's import and
validate-modules tests resolve). Every other byte is the project's, so a finding names a real line.
The ignores are tests/sanity/ignores.txt (every entry justified by a comment beside it).

No downloads: ansible-test builds one virtualenv per test and pip-installs its pinned requirements
there. scripts/setup.sh downloads those wheels from PyPI once (tests/sanity/requirements.txt) into
.venv/sanity/wheels; here ansible-test runs with HOME=.venv/sanity/home, whose pip.conf says
`no-index` + `find-links` to that directory, and whose ansible-test cache holds the pip bootstrap
(tests/sanity/get_pip.py: pip installed from its PyPI wheel instead of ansible-test's get-pip.py
download). The test virtualenvs are kept there, so later runs install nothing.

Usage: tests/sanity/run.py [ansible-test sanity options, e.g. --test pylint]
"""

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMESPACE, NAME = 'l4lb', 'lab'
COLLECTION = os.path.join(ROOT, 'build', 'sanity', 'ansible_collections', NAMESPACE, NAME)
SANITY_DIR = os.path.join(ROOT, '.venv', 'sanity')
WHEELS = os.path.join(SANITY_DIR, 'wheels')
HOME = os.path.join(SANITY_DIR, 'home')
PIP_VERSION = '24.2'  # ansible-test's get_venv_packages() for Python 3.11

LAYOUT = (
    ('library', 'plugins/modules'),
    ('module_utils', 'plugins/module_utils'),
    ('connection_plugins', 'plugins/connection'),
    ('filter_plugins', 'plugins/filter'),
)
# The project's own module_utils: every package and module directly in module_utils/.
OWN_UTILS = sorted(os.path.splitext(n)[0] for n in os.listdir(os.path.join(ROOT, 'module_utils'))
                   if not n.startswith(('.', '_')) and (n.endswith('.py') or
                                                        os.path.isdir(os.path.join(ROOT, 'module_utils', n))))
IMPORT_RE = re.compile(r'\bansible\.module_utils\.(%s)\b' % '|'.join(map(re.escape, OWN_UTILS)))


def rewrite_imports(text):
    """The project's module_utils imports as the collection's; a parenthesised import's
    continuation lines move right by as much as its first line grew (pep8 checks their alignment)."""
    out, shift = [], 0
    for line in text.splitlines(keepends=True):
        new = IMPORT_RE.sub(r'ansible_collections.%s.%s.plugins.module_utils.\1' % (NAMESPACE, NAME), line)
        if new != line:
            shift = len(new) - len(line) if new.rstrip().endswith(',') or '(' in new and ')' not in new else 0
        elif shift and line.strip():
            new = ' ' * shift + line
            if ')' in line:
                shift = 0
        out.append(new)
    return ''.join(out)


def fail(msg):
    sys.stderr.write('sanity: %s\n' % msg)
    sys.exit(2)


def generate():
    shutil.rmtree(COLLECTION, ignore_errors=True)
    for src, dst in LAYOUT:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, src)):
            dirnames[:] = [d for d in dirnames if d != '__pycache__']
            rel = os.path.relpath(dirpath, os.path.join(ROOT, src))
            out_dir = os.path.normpath(os.path.join(COLLECTION, dst, rel))
            os.makedirs(out_dir, exist_ok=True)
            for filename in filenames:
                if not filename.endswith('.py'):
                    continue
                with open(os.path.join(dirpath, filename), encoding='utf-8') as f:
                    text = f.read()
                text = rewrite_imports(text)
                with open(os.path.join(out_dir, filename), 'w', encoding='utf-8') as f:
                    f.write(text)
    with open(os.path.join(COLLECTION, 'galaxy.yml'), 'w', encoding='utf-8') as f:
        f.write('namespace: %s\nname: %s\nversion: 1.0.0\nreadme: README.md\n'
                'authors: [L4LB lab toolkit contributors]\nlicense: [GPL-3.0-or-later]\n'
                % (NAMESPACE, NAME))
    with open(os.path.join(COLLECTION, 'README.md'), 'w', encoding='utf-8') as f:
        f.write('Generated by tests/sanity/run.py for ansible-test sanity; not a real collection.\n')
    os.makedirs(os.path.join(COLLECTION, 'meta'))
    with open(os.path.join(COLLECTION, 'meta', 'runtime.yml'), 'w', encoding='utf-8') as f:
        f.write("---\nrequires_ansible: '>=2.19.0'\n")
    os.makedirs(os.path.join(COLLECTION, 'tests', 'sanity'))
    with open(os.path.join(ROOT, 'tests', 'sanity', 'ignores.txt'), encoding='utf-8') as f:
        entries = [line for line in f if line.strip() and not line.startswith('#')]
    with open(os.path.join(COLLECTION, 'tests', 'sanity', 'ignore-2.19.txt'), 'w', encoding='utf-8') as f:
        f.writelines(entries)
    # build/ is ignored by the project's git, and ansible-test skips ignored files: the
    # collection gets a repository of its own, which ansible-test then lists the files from.
    git = ['git', '-C', COLLECTION, '-c', 'user.name=sanity', '-c', 'user.email=sanity@localhost']
    subprocess.run(git + ['init', '-q'], check=True)
    subprocess.run(git + ['add', '-A'], check=True)


def offline_home():
    """HOME for ansible-test: pip installs only from the wheels set-up downloaded."""
    if not os.path.isdir(WHEELS) or not any(n.startswith('pip-%s-' % PIP_VERSION) for n in os.listdir(WHEELS)):
        fail('no sanity wheels in %s: run `make setup` (scripts/setup.sh) first' % WHEELS)
    pip_conf = os.path.join(HOME, '.config', 'pip', 'pip.conf')
    os.makedirs(os.path.dirname(pip_conf), exist_ok=True)
    with open(pip_conf, 'w', encoding='utf-8') as f:
        f.write('[global]\nno-index = true\nfind-links = %s\n' % WHEELS)
    cache = os.path.join(HOME, '.ansible', 'test', 'cache')
    os.makedirs(cache, exist_ok=True)
    shutil.copy(os.path.join(ROOT, 'tests', 'sanity', 'get_pip.py'),
                os.path.join(cache, 'get_pip_%s.py' % PIP_VERSION.replace('.', '_')))


def main(argv):
    ansible_test = shutil.which('ansible-test', path=os.path.join(ROOT, '.venv', 'bin'))
    if not ansible_test:
        fail('ansible-test not found in .venv/bin: run `make setup` first')
    generate()
    offline_home()
    env = dict(os.environ, HOME=HOME)
    for var in ('PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS'):
        env.pop(var, None)
    cmd = [ansible_test, 'sanity', '--python', '3.11', '--local', '--color', 'no'] + argv
    return subprocess.run(cmd, cwd=COLLECTION, env=env, check=False).returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
