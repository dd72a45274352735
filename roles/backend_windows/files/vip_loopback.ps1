#Requires -Version 5.1
# backend_windows: the VIPs on a loopback adapter of its own, and weak host send and receive on
# that adapter and on the external interface (a DSR backend accepts for the VIP on the external
# NIC and answers from it). With -VipRange, the /32s on the adapter inside that range that are
# not in -Vips are removed (the VIP of a service that is gone). Reads first, changes only what differs, names each change; in check
# mode (-WhatIf) it changes nothing and names what it would do.
[CmdletBinding(SupportsShouldProcess)]
param (
    [ValidateSet('present', 'absent')][string]$State = 'present',
    [Parameter(Mandatory)][string]$LoopbackName,
    [AllowEmptyCollection()][string[]]$Vips = @(),
    [string]$VipRange = '',
    [Parameter(Mandatory)][string]$ExternalIp,
    [string]$ExternalAlias = '',
    [string]$DevconPath = ''
)
$ErrorActionPreference = 'Stop'
$actions = [System.Collections.Generic.List[string]]::new()
$loopbackDescription = 'Microsoft KM-TEST Loopback Adapter*'

# The interface on the lab's switch: by alias, or the one holding the backend's address.
if ($ExternalAlias) {
    $external = Get-NetIPInterface -InterfaceAlias $ExternalAlias -AddressFamily IPv4
}
else {
    $address = Get-NetIPAddress -IPAddress $ExternalIp -AddressFamily IPv4 -ErrorAction SilentlyContinue
    if ($null -eq $address) { throw "no interface holds $ExternalIp (backend_windows_ip)" }
    $external = Get-NetIPInterface -InterfaceIndex $address.InterfaceIndex -AddressFamily IPv4
}

$loopback = Get-NetAdapter -Name $LoopbackName -ErrorAction SilentlyContinue

# An IPv4 address as a number, and whether it lies in a CIDR range.
function ConvertTo-AddressNumber([string]$Address) {
    $n = [uint64]0
    foreach ($byte in ([System.Net.IPAddress]::Parse($Address)).GetAddressBytes()) { $n = $n * 256 + $byte }
    return $n
}
function Test-InRange([string]$Address, [string]$Range) {
    $net, $length = $Range.Split('/')
    $size = [uint64][math]::Pow(2, 32 - [int]$length)
    return [math]::Floor((ConvertTo-AddressNumber $Address) / $size) -eq [math]::Floor((ConvertTo-AddressNumber $net) / $size)
}
$outside = @($Vips | Where-Object { $VipRange -and -not (Test-InRange $_ $VipRange) })
if ($outside.Count -gt 0) { throw "VIPs $($outside -join ', ') are not inside the VIP range $VipRange (lab_vip_range)" }

if ($State -eq 'present') {
    if ($null -eq $loopback) {
        if ($PSCmdlet.ShouldProcess($LoopbackName, 'create a loopback adapter (devcon install netloop.inf *MSLOOP)')) {
            if (-not $DevconPath -or -not (Test-Path -LiteralPath $DevconPath)) {
                throw "devcon.exe not found at '$DevconPath' (backend_windows_devcon_src, backend_windows_devcon_path)"
            }
            $before = @(Get-NetAdapter | Where-Object { $_.InterfaceDescription -like $loopbackDescription } |
                ForEach-Object { $_.InterfaceGuid })
            $inf = Join-Path -Path $env:windir -ChildPath 'inf\netloop.inf'
            $out = & $DevconPath install $inf '*MSLOOP' 2>&1 | Out-String
            if ($LASTEXITCODE -ne 0) { throw "devcon install $inf *MSLOOP failed ($LASTEXITCODE): $out" }
            $new = $null
            for ($i = 0; $i -lt 30 -and $null -eq $new; $i++) {
                $new = Get-NetAdapter | Where-Object {
                    $_.InterfaceDescription -like $loopbackDescription -and $before -notcontains $_.InterfaceGuid
                } | Select-Object -First 1
                if ($null -eq $new) { Start-Sleep -Seconds 1 }
            }
            if ($null -eq $new) { throw "devcon made no new loopback adapter: $out" }
            Rename-NetAdapter -Name $new.Name -NewName $LoopbackName
            $loopback = Get-NetAdapter -Name $LoopbackName
        }
        $actions.Add("created loopback adapter $LoopbackName")
    }

    $onLoopback = @()
    if ($null -ne $loopback) {
        $onLoopback = @(Get-NetIPAddress -InterfaceIndex $loopback.ifIndex -AddressFamily IPv4 -ErrorAction SilentlyContinue)
    }
    foreach ($Vip in $Vips) {
        $vipAddresses = @($onLoopback | Where-Object { $_.IPAddress -eq $Vip })
        $wrongPrefix = @($vipAddresses | Where-Object { $_.PrefixLength -ne 32 })
        if ($wrongPrefix.Count -gt 0 -and $PSCmdlet.ShouldProcess("$Vip on $LoopbackName", 'remove (prefix length is not 32)')) {
            $wrongPrefix | Remove-NetIPAddress -Confirm:$false
            $actions.Add("removed $Vip/$($wrongPrefix[0].PrefixLength) from $LoopbackName")
        }
        if (@($vipAddresses | Where-Object { $_.PrefixLength -eq 32 }).Count -eq 0) {
            if ($null -ne $loopback -and $PSCmdlet.ShouldProcess("$Vip/32 on $LoopbackName", 'add')) {
                New-NetIPAddress -InterfaceIndex $loopback.ifIndex -IPAddress $Vip -PrefixLength 32 -SkipAsSource $true | Out-Null
            }
            $actions.Add("added $Vip/32 to $LoopbackName")
        }
    }
    # The VIPs of services that are gone: /32s inside the range that no service here has.
    $stale = @($onLoopback | Where-Object {
        $VipRange -and $_.PrefixLength -eq 32 -and $Vips -notcontains $_.IPAddress -and (Test-InRange $_.IPAddress $VipRange)
    })
    foreach ($old in $stale) {
        if ($PSCmdlet.ShouldProcess("$($old.IPAddress)/32 on $LoopbackName", 'remove (no service has it)')) {
            $old | Remove-NetIPAddress -Confirm:$false
        }
        $actions.Add("removed $($old.IPAddress)/32 from $LoopbackName")
    }

    $interfaces = @($external)
    if ($null -ne $loopback) {
        $interfaces += Get-NetIPInterface -InterfaceIndex $loopback.ifIndex -AddressFamily IPv4
    }
    else {
        $actions.Add("weak host send and receive enabled on $LoopbackName")
    }
    foreach ($iface in $interfaces) {
        if ($iface.WeakHostSend -ne 'Enabled' -or $iface.WeakHostReceive -ne 'Enabled') {
            if ($PSCmdlet.ShouldProcess($iface.InterfaceAlias, 'enable weak host send and receive')) {
                Set-NetIPInterface -InterfaceIndex $iface.InterfaceIndex -AddressFamily IPv4 -WeakHostSend Enabled -WeakHostReceive Enabled
            }
            $actions.Add("weak host send and receive enabled on $($iface.InterfaceAlias)")
        }
    }
}
elseif ($null -ne $loopback) {
    if ($PSCmdlet.ShouldProcess($LoopbackName, 'remove the loopback adapter (and the VIP on it)')) {
        $out = & pnputil.exe /remove-device $loopback.PnPDeviceID 2>&1 | Out-String
        if ($LASTEXITCODE -ne 0) { throw "pnputil /remove-device $($loopback.PnPDeviceID) failed ($LASTEXITCODE): $out" }
    }
    $actions.Add("removed loopback adapter $LoopbackName (and the VIPs on it)")
}

$loopbackIndex = $null
if ($null -ne $loopback) { $loopbackIndex = $loopback.ifIndex }
$Ansible.Changed = $actions.Count -gt 0
$Ansible.Result = @{
    actions          = @($actions)
    external_alias   = $external.InterfaceAlias
    external_ifindex = $external.InterfaceIndex
    loopback_ifindex = $loopbackIndex
}
