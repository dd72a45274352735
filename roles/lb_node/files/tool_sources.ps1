#Requires -Version 5.1
# lb_node (Windows): the repository parts the LB node runs (bpf/, bin/l4lbctl, module_utils/l4lb)
# below Destination, from the one zip the controller built (files/zip_sources.py). Judged by
# content: every entry is compared with the file on disk (SHA-256) and only a missing or
# different file is written; a file below Destination the archive does not hold is removed
# (Python's __pycache__ directories excepted). Names each change; -WhatIf in check mode. State
# absent removes Destination.
[CmdletBinding(SupportsShouldProcess)]
param (
    [ValidateSet('present', 'absent')][string]$State = 'present',
    [Parameter(Mandatory)][string]$Destination,
    [string]$Archive = ''
)
$ErrorActionPreference = 'Stop'
$actions = [System.Collections.Generic.List[string]]::new()
$sha256 = [System.Security.Cryptography.SHA256]::Create()

function Get-Digest {
    param ([byte[]]$Bytes)
    [System.BitConverter]::ToString($sha256.ComputeHash($Bytes))
}

$root = [System.IO.Path]::GetFullPath($Destination).TrimEnd('\')
if ($State -eq 'absent') {
    if (Test-Path -LiteralPath $root) {
        if ($PSCmdlet.ShouldProcess($root, 'remove')) { Remove-Item -LiteralPath $root -Recurse -Force }
        $actions.Add("removed $root")
    }
}
elseif (-not (Test-Path -LiteralPath $Archive -PathType Leaf)) {
    # in check mode the archive was not copied yet
    if (-not $WhatIfPreference) { throw "the sources archive $Archive is not on the node" }
    $actions.Add("unpack $Archive into $root (the archive is not on the node yet)")
}
else {
    Add-Type -AssemblyName System.IO.Compression, System.IO.Compression.FileSystem
    $wanted = @{}
    $zip = [System.IO.Compression.ZipFile]::OpenRead($Archive)
    try {
        foreach ($entry in $zip.Entries) {
            if ($entry.FullName.EndsWith('/')) { continue }   # a directory entry
            $relative = $entry.FullName.Replace('/', '\')
            $path = [System.IO.Path]::GetFullPath((Join-Path -Path $root -ChildPath $relative))
            if (-not $path.StartsWith($root + '\', [System.StringComparison]::OrdinalIgnoreCase)) {
                throw "archive entry $($entry.FullName) would land outside $root"
            }
            $wanted[$path.ToLowerInvariant()] = $true
            $buffer = New-Object -TypeName System.IO.MemoryStream
            $stream = $entry.Open()
            try { $stream.CopyTo($buffer) } finally { $stream.Dispose() }
            $bytes = $buffer.ToArray()
            $same = (Test-Path -LiteralPath $path -PathType Leaf) -and
                ((Get-Digest -Bytes ([System.IO.File]::ReadAllBytes($path))) -eq (Get-Digest -Bytes $bytes))
            if (-not $same) {
                if ($PSCmdlet.ShouldProcess($path, 'write')) {
                    New-Item -ItemType Directory -Path (Split-Path -Path $path -Parent) -Force | Out-Null
                    [System.IO.File]::WriteAllBytes($path, $bytes)
                }
                $actions.Add("wrote $relative")
            }
        }
    }
    finally {
        $zip.Dispose()
    }
    if (Test-Path -LiteralPath $root) {
        foreach ($file in @(Get-ChildItem -LiteralPath $root -Recurse -File -Force)) {
            if ($file.FullName -match '\\__pycache__\\') { continue }
            if (-not $wanted.ContainsKey($file.FullName.ToLowerInvariant())) {
                if ($PSCmdlet.ShouldProcess($file.FullName, 'remove (not in the archive)')) {
                    Remove-Item -LiteralPath $file.FullName -Force
                }
                $actions.Add("removed $($file.FullName.Substring($root.Length + 1))")
            }
        }
    }
}

$Ansible.Changed = $actions.Count -gt 0
$Ansible.Result = @{ actions = @($actions) }
