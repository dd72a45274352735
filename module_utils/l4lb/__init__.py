"""The L4 load balancer's control-plane core, shared by the Ansible modules, l4lbctl and tests.

Inside this package use relative imports only: Ansible ships it as
``ansible.module_utils.l4lb``; the CLI and tests import it as ``l4lb``.
"""
