# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for get-pip.py in ansible-test's bootstrap cache (tests/sanity/run.py puts it there).

ansible-test bootstraps pip into each empty sanity virtualenv by running a get-pip.py it would
download from ci-files.testing.ansible.com. This one installs pip from the PyPI wheel that
scripts/setup.sh downloaded: HOME is .venv/sanity/home, the wheels are in .venv/sanity/wheels,
and HOME's pip.conf allows no index. ansible-test's arguments (`pip==24.2 --no-setuptools
--no-wheel`) are get-pip.py's; the two get-pip-only flags mean "install nothing else" here anyway.
"""
import glob
import os
import runpy
import sys

WHEELS = os.path.join(os.path.dirname(os.path.expanduser('~')), 'wheels')
found = sorted(glob.glob(os.path.join(WHEELS, 'pip-*.whl')))
if not found:
    sys.exit('get_pip: no pip wheel in %s: run scripts/setup.sh' % WHEELS)
sys.path.insert(0, found[-1])
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.argv = ['pip', 'install', '--no-index', '--find-links', WHEELS] + args
runpy.run_module('pip', run_name='__main__', alter_sys=True)
