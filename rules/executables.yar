/*
 * Verdict bundled rules: executables.
 * Meta conventions: see rules/README.md.
 */

rule Verdict_PE_UPX_Packed
{
    meta:
        description = "PE executable with the section names UPX0 and UPX1 in its section table: packed with UPX (common for legitimate tools too)"
        severity = "info"
        attack = "T1027.002"

    strings:
        // Section names are 8 bytes, NUL-padded.
        $upx0 = { 55 50 58 30 00 00 00 00 }
        $upx1 = { 55 50 58 31 00 00 00 00 }

    condition:
        uint16(0) == 0x5A4D and uint32(0x3C) < 0x10000 and
        uint32(uint32(0x3C)) == 0x00004550 and
        $upx0 in (uint32(0x3C) .. uint32(0x3C) + 0x400) and
        $upx1 in (uint32(0x3C) .. uint32(0x3C) + 0x400)
}

rule Verdict_ELF_UPX_Packed
{
    meta:
        description = "ELF executable with the UPX! marker in its first kilobyte: packed with UPX"
        severity = "info"
        attack = "T1027.002"

    strings:
        $marker = "UPX!" ascii

    condition:
        uint32(0) == 0x464C457F and $marker in (0 .. 0x400)
}
