# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The L4 load balancer's control-plane core, shared by the Ansible modules, l4lbctl and tests.

Inside this package use relative imports only: Ansible ships it as
``ansible.module_utils.l4lb``; the CLI and tests import it as ``l4lb``.
"""
