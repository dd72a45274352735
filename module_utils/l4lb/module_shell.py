# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every Ansible module of ours does around its one core call: turn the core's refusal
(L4LBError, whose message names what was wrong) into fail_json, warnings into module.warn,
and the result dict into exit_json. Keeps the modules thin shells."""

from __future__ import annotations

from .errors import L4LBError


def run_module(module, action) -> None:
    """``action()`` returns the result dict (with ``changed``); never returns itself."""
    try:
        result = action()
    except L4LBError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    module.exit_json(**result)
