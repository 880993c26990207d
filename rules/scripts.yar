/*
 * Verdict bundled rules: script content (PowerShell, JScript/VBScript, command lines).
 *
 * These rules look at text: scripts, command lines in batch files and shortcuts, macro source
 * extracted by the document scanner, fetched web content. Dots in literal names are written
 * escaped inside regular expressions, so that this file does not match its own rules.
 * Meta conventions: see rules/README.md.
 */

rule Verdict_PowerShell_Encoded_Command
{
    meta:
        description = "PowerShell started with -EncodedCommand (or one of its abbreviations) and a long base64 argument: hides the command from readers and simple filters"
        severity = "suspicious"
        attack = "T1059.001"

    strings:
        // -e, -ec, -en, -enc ... -encodedcommand; then at least 40 base64 characters.
        $enc = /(powershell|pwsh)(\.exe)?["']?[^\r\n]{0,200}\s[-\/]e(c|n[a-z]{0,12})?\s+["']?[a-z0-9+\/]{40}/ nocase ascii wide

    condition:
        $enc
}

rule Verdict_PowerShell_Download_Cradle
{
    meta:
        description = "PowerShell that downloads text and runs it at once (Invoke-Expression over WebClient.DownloadString, Invoke-WebRequest or Invoke-RestMethod)"
        severity = "suspicious"
        attack = "T1105"

    strings:
        // Invoke-Expression applied to a new WebClient's DownloadString/DownloadData result.
        $iex_webclient = /(iex|invoke-expression)\s*\(+\s*new-object\s+(system\.)?net\.webclient\s*\)\s*\.\s*download(string|data)\s*\(/ nocase ascii wide
        // A DownloadString/DownloadData call on a literal URL piped into Invoke-Expression.
        $webclient_pipe = /\.\s*download(string|data)\s*\(\s*["'][^"'\r\n]{4,400}["']\s*\)\s*\|\s*(iex|invoke-expression)\b/ nocase ascii wide
        // Invoke-WebRequest or Invoke-RestMethod (or their aliases) piped into Invoke-Expression.
        $web_pipe = /\b(iwr|irm|invoke-webrequest|invoke-restmethod)\s[^\r\n|;]{4,400}\|\s*(iex|invoke-expression)\b/ nocase ascii wide
        // Invoke-Expression applied to the result of Invoke-WebRequest or Invoke-RestMethod.
        $iex_web = /\b(iex|invoke-expression)\s*\(+\s*(iwr|irm|invoke-webrequest|invoke-restmethod)\s/ nocase ascii wide

    condition:
        any of them
}

rule Verdict_Script_Shell_And_Download
{
    meta:
        description = "JScript, VBScript or HTA code that creates both a shell object able to run programs (WScript.Shell, Shell.Application) and an HTTP client object, and calls Run, Exec or ShellExecute"
        severity = "suspicious"
        attack = "T1105"

    strings:
        $create1 = /ActiveXObject\s*\(/ nocase ascii wide
        $create2 = /CreateObject\s*\(/ nocase ascii wide
        $shell1 = /WScript\.Shell/ nocase ascii wide
        $shell2 = /Shell\.Application/ nocase ascii wide
        $http1 = /MSXML2\.(Server)?XMLHTTP/ nocase ascii wide
        $http2 = /Microsoft\.XMLHTTP/ nocase ascii wide
        $http3 = /WinHttp\.WinHttpRequest/ nocase ascii wide
        $run = /\.(Run|Exec|ShellExecute)\b/ nocase ascii wide

    condition:
        filesize < 10MB and uint16(0) != 0x5A4D and
        any of ($create*) and any of ($shell*) and any of ($http*) and $run
}

rule Verdict_LOLBin_Certutil_Download
{
    meta:
        description = "certutil used to download a file (-urlcache or -verifyctl with a URL)"
        severity = "suspicious"
        attack = "T1105"

    strings:
        $cmd = /certutil(\.exe)?["']?\s[^\r\n]{0,200}[-\/](urlcache|verifyctl)\b[^\r\n]{0,300}(https?|ftp):\/\// nocase ascii wide

    condition:
        $cmd
}

rule Verdict_LOLBin_Bitsadmin_Download
{
    meta:
        description = "bitsadmin used to download a file (/transfer or /addfile with a URL)"
        severity = "suspicious"
        attack = "T1197"

    strings:
        $cmd = /bitsadmin(\.exe)?["']?\s[^\r\n]{0,200}[-\/](transfer|addfile)\b[^\r\n]{0,300}(https?|ftp):\/\// nocase ascii wide

    condition:
        $cmd
}

rule Verdict_LOLBin_Mshta_Remote
{
    meta:
        description = "mshta run on a remote URL or on inline javascript:/vbscript: code"
        severity = "suspicious"
        attack = "T1218.005"

    strings:
        $cmd = /mshta(\.exe)?["']?\s+["']?(https?:\/\/|javascript:|vbscript:)/ nocase ascii wide

    condition:
        $cmd
}

rule Verdict_LOLBin_Regsvr32_Remote_Scriptlet
{
    meta:
        description = "regsvr32 /i: with a URL and scrobj.dll: runs a remote scriptlet (the technique known as Squiblydoo)"
        severity = "suspicious"
        attack = "T1218.010"

    strings:
        $cmd = /regsvr32(\.exe)?["']?\s[^\r\n]{0,200}[-\/]i:\s*["']?(https?|ftp):\/\/[^\r\n]{0,300}scrobj/ nocase ascii wide

    condition:
        $cmd
}
