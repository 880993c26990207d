/*
 * Verdict bundled rules: standard test artefacts.
 *
 * The test strings are split or escaped so that this file (and the repository) never holds a
 * copy that other scanners would detect. Meta conventions: see rules/README.md.
 */

rule Verdict_EICAR_Test_File
{
    meta:
        description = "EICAR anti-malware test file: the 68-byte test string at the start of a file of at most 128 bytes, as the EICAR definition requires"
        severity = "malware"
        test_artefact = true
        reference = "https://www.eicar.org/download-anti-malware-testfile/"

    strings:
        // The 68-byte test string in two halves, so that no file here holds it whole.
        $head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
        $tail = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

    condition:
        $head at 0 and $tail at 28 and filesize <= 128
}

rule Verdict_GTUBE_Spam_Test
{
    meta:
        description = "GTUBE (Generic Test for Unsolicited Bulk Email) spam test string, anywhere in the content"
        severity = "info"
        test_artefact = "spam"
        reference = "https://spamassassin.apache.org/gtube/"

    strings:
        // Written as a regular expression (escaped), so that this file does not hold the string.
        $gtube = /XJS\*C4JDBQADN1\.NSBN3\*2IDNEN\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\*C\.34X/

    condition:
        $gtube
}
