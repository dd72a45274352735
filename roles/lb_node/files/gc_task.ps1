#Requires -Version 5.1
# lb_node (Windows): the CT GC scheduled task's running instance. restart - stop it (if it runs)
# and start it again, so a changed definition or a new load balancer is picked up at once instead
# of at the next minute; stop - stop it (before the task and the log it writes are removed).
# Names what it did; -WhatIf in check mode. A task that does not exist is left alone.
[CmdletBinding(SupportsShouldProcess)]
param (
    [ValidateSet('restart', 'stop')][string]$Action = 'restart',
    [Parameter(Mandatory)][string]$TaskPath,
    [Parameter(Mandatory)][string]$TaskName
)
$ErrorActionPreference = 'Stop'
$actions = [System.Collections.Generic.List[string]]::new()
$folder = $TaskPath.TrimEnd('\') + '\'
$task = Get-ScheduledTask -TaskPath $folder -TaskName $TaskName -ErrorAction SilentlyContinue
if ($null -ne $task) {
    if ($task.State -eq 'Running') {
        if ($PSCmdlet.ShouldProcess("$folder$TaskName", 'stop')) { $task | Stop-ScheduledTask }
        $actions.Add("stopped $folder$TaskName")
    }
    if ($Action -eq 'restart') {
        if ($PSCmdlet.ShouldProcess("$folder$TaskName", 'start')) { $task | Start-ScheduledTask }
        $actions.Add("started $folder$TaskName")
    }
}
$Ansible.Changed = $actions.Count -gt 0
$Ansible.Result = @{ actions = @($actions); found = $null -ne $task }
