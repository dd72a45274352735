#Requires -Version 5.1
# windows_ebpf: what the role decides by, read from the node. Changes nothing (and so runs in
# check mode too); the result goes back as $Ansible.Result.
[CmdletBinding(SupportsShouldProcess)]
param (
    [Parameter(Mandatory)][string]$ProductId,
    [string[]]$Features = @(),
    [string[]]$Services = @()
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

# Secure Boot: on, off, or unsupported (BIOS firmware, e.g. a generation 1 Hyper-V guest).
$secureBoot = 'unsupported'
try {
    if (Confirm-SecureBootUEFI) { $secureBoot = 'on' } else { $secureBoot = 'off' }
}
catch {
    $secureBoot = 'unsupported'
}

# The boot entry as bcdedit prints it (the controller looks for "testsigning Yes"), and whether the
# running boot has test signing (it takes effect at the next boot).
$bcdedit = (& bcdedit.exe /enum '{current}' | Out-String)
if ($LASTEXITCODE -ne 0) { throw "bcdedit /enum {current} failed ($LASTEXITCODE): $bcdedit" }
$startOptions = (Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control').SystemStartOptions
$runningTestSigning = [bool]($startOptions -match '\bTESTSIGNING\b')

# eBPF for Windows as installed (its uninstall entry), and the state of each wanted feature
# (Windows Installer: 3 = installed locally).
$installed = $null
$uninstallRoots = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall',
                    'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall')
foreach ($root in $uninstallRoots) {
    foreach ($key in @(Get-ChildItem -Path $root -ErrorAction SilentlyContinue)) {
        $entry = Get-ItemProperty -Path $key.PSPath
        if ($entry.DisplayName -eq 'eBPF for Windows') {
            $installed = @{ product_id = $key.PSChildName; version = [string]$entry.DisplayVersion }
        }
    }
}
$featureState = @{}
if ($null -ne $installed) {
    $msi = New-Object -ComObject WindowsInstaller.Installer
    foreach ($feature in $Features) {
        try { $featureState[$feature] = [int]$msi.FeatureState($installed.product_id, $feature) }
        catch { $featureState[$feature] = -1 }
    }
}

# The VC++ 2015-2022 x64 runtime, where the MSI's launch condition looks for it.
$vcRuntime = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\X64' -ErrorAction SilentlyContinue
$vcVersion = ''
if ($null -ne $vcRuntime) { $vcVersion = [string]$vcRuntime.Version }

$serviceState = @{}
foreach ($name in $Services) {
    $service = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $service) { $serviceState[$name] = 'missing' } else { $serviceState[$name] = [string]$service.Status }
}

$Ansible.Result = @{
    secure_boot         = $secureBoot
    bcdedit             = $bcdedit
    running_testsigning = $runningTestSigning
    installed           = $installed
    wanted_product_id   = $ProductId
    features            = $featureState
    vcredist            = $vcVersion
    services            = $serviceState
}
