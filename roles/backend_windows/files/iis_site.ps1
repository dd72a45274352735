#Requires -Version 5.1
# backend_windows: the IIS settings a web.config cannot make (sections locked at the server
# level), through appcmd: the site's root directory, and classic ASP's limits on request bodies
# and response buffering (the echo answers a 1 MiB upload with it). Reads first, changes only
# what differs, names each change; -WhatIf in check mode.
[CmdletBinding(SupportsShouldProcess)]
param (
    [ValidateSet('present', 'absent')][string]$State = 'present',
    [Parameter(Mandatory)][string]$Site,
    [Parameter(Mandatory)][string]$PhysicalPath,
    [string]$DefaultPhysicalPath = '%SystemDrive%\inetpub\wwwroot',
    [long]$AspMaxRequestBytes = 8388608
)
$ErrorActionPreference = 'Stop'
$actions = [System.Collections.Generic.List[string]]::new()
$appcmd = Join-Path -Path $env:windir -ChildPath 'system32\inetsrv\appcmd.exe'

function Invoke-Appcmd {
    param ([string[]]$Arguments)
    $out = & $appcmd @Arguments 2>&1 | Out-String
    if ($LASTEXITCODE -ne 0) { throw "appcmd $($Arguments -join ' ') failed ($LASTEXITCODE): $out" }
    $out
}

$vdir = "$Site/"
$current = (Invoke-Appcmd -Arguments @('list', 'vdir', $vdir, '/text:physicalPath')).Trim()
$currentFull = [Environment]::ExpandEnvironmentVariables($current)
$want = $PhysicalPath
if ($State -eq 'absent') {
    $want = $DefaultPhysicalPath
    if ($currentFull -ne [Environment]::ExpandEnvironmentVariables($PhysicalPath)) { $want = $current }
}
if ($currentFull -ne [Environment]::ExpandEnvironmentVariables($want)) {
    if ($PSCmdlet.ShouldProcess($vdir, "set physicalPath to $want")) {
        Invoke-Appcmd -Arguments @('set', 'vdir', $vdir, "-physicalPath:$want") | Out-Null
    }
    $actions.Add("site $Site serves $want (was $current)")
}

if ($State -eq 'present') {
    $asp = Invoke-Appcmd -Arguments @('list', 'config', $Site, '-section:system.webServer/asp')
    $limits = @{}
    foreach ($name in @('maxRequestEntityAllowed', 'bufferingLimit')) {
        $limits[$name] = if ($asp -match "$name=`"(\d+)`"") { [long]$Matches[1] } else { -1 }
    }
    if ($limits['maxRequestEntityAllowed'] -ne $AspMaxRequestBytes -or $limits['bufferingLimit'] -lt $AspMaxRequestBytes) {
        if ($PSCmdlet.ShouldProcess("$Site ASP limits", "set to $AspMaxRequestBytes bytes")) {
            Invoke-Appcmd -Arguments @('set', 'config', $Site, '-section:system.webServer/asp',
                "/limits.maxRequestEntityAllowed:$AspMaxRequestBytes", "/limits.bufferingLimit:$AspMaxRequestBytes",
                '/commit:apphost') | Out-Null
        }
        $actions.Add("classic ASP of $Site takes request bodies and buffers answers up to $AspMaxRequestBytes bytes")
    }
}

$Ansible.Changed = $actions.Count -gt 0
$Ansible.Result = @{ actions = @($actions); physical_path = $current }
