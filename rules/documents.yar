/*
 * Verdict bundled rules: Office and RTF documents.
 * Meta conventions: see rules/README.md.
 */

rule Verdict_Office_OLE_VBA_Project
{
    meta:
        description = "OLE compound file (legacy .doc/.xls/.ppt, or a vbaProject.bin) holding a VBA project storage: the document carries macros"
        severity = "info"

    strings:
        // Directory entry names are UTF-16LE; _VBA_PROJECT_CUR (Excel) starts with the same name.
        $vba_project = "_VBA_PROJECT" wide

    condition:
        uint32be(0) == 0xD0CF11E0 and uint32be(4) == 0xA1B11AE1 and $vba_project
}

rule Verdict_OOXML_VBA_Project
{
    meta:
        description = "Office Open XML package (.docm/.xlsm/.pptm...) with a vbaProject.bin member: the document carries macros"
        severity = "info"

    strings:
        // Member names are stored uncompressed in local and central directory headers.
        $member = /(word|xl|ppt)\/vbaProject\.bin/ ascii

    condition:
        uint32(0) == 0x04034B50 and $member
}

rule Verdict_VBA_AutoExec_Shell
{
    meta:
        description = "VBA source with a macro that runs by itself when the document opens or closes, and code that starts programs or fetches data (Shell, WScript.Shell, Shell.Application, XMLHTTP, WinHttp, Win32_Process)"
        severity = "suspicious"
        attack = "T1059.005"
        note = "Matches decompressed macro source (as extracted by the document scanner), not the compressed stream inside an OLE file"

    strings:
        $auto = /Sub\s+(Auto_?Open|Auto_?Close|Auto_?Exec|AutoNew|Document_(Open|Close|New)|DocumentOpen|Workbook_(Open|Activate|BeforeClose)|Presentation_Open)\s*\(/ nocase ascii wide
        $exec1 = /\bShell\s*\(/ nocase ascii wide
        $exec2 = /\bShell\s+["a-z_]/ nocase ascii wide
        $exec3 = /CreateObject\s*\(\s*"(WScript\.Shell|Shell\.Application|MSXML2\.(Server)?XMLHTTP[.0-9]*|Microsoft\.XMLHTTP|WinHttp\.WinHttpRequest[.0-9]*)"/ nocase ascii wide
        $exec4 = /Win32_Process\b/ nocase ascii wide

    condition:
        $auto and any of ($exec*)
}

rule Verdict_RTF_Object_AutoUpdate
{
    meta:
        description = "RTF document with an embedded or linked object set to update automatically on open (\\objupdate), a trigger used by document exploits"
        severity = "suspicious"
        attack = "T1203"

    strings:
        $objupdate = "\\objupdate" ascii nocase

    condition:
        // "{\rt": Word accepts any header that starts so, not only "{\rtf1".
        uint32(0) == 0x74725C7B and $objupdate
}
