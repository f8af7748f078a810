#nullable enable
// An MSBuild inline task (RoslynCodeTaskFactory), run after every build and publish by build/Distillery.targets
// (imported by Directory.Build.targets, and shipped in the Distillery package as buildTransitive/ for apps using it).
//
// Why: TorchSharp 0.107's native libLibTorchSharp.so was linked against a libstdc++ that defines GLIBCXX_3.4.32.
// Debian 12 ships GLIBCXX up to 3.4.30, so the dynamic loader refuses the library ("version `GLIBCXX_3.4.32' not
// found") and TorchSharp reports a misleading "no reference to libtorch-cpu-linux-x64". Exactly one symbol is bound
// to that version, _ZSt21ios_base_library_initv, a reference GCC 13 emits for iostream start-up that the library never
// needs on an older libstdc++ (whose iostreams initialise themselves). The fix, equivalent to
// `patchelf --clear-symbol-version _ZSt21ios_base_library_initv` plus marking the version need as weak:
//   1. set that symbol's .gnu.version entry to 1 (VER_NDX_GLOBAL: "any version"), and
//   2. set VER_FLG_WEAK (0x2) on the GLIBCXX_3.4.32 entry of .gnu.version_r, so glibc's loader only warns.
// After a build the patch is applied only when the system libstdc++ lacks GLIBCXX_3.4.32 (newer distributions are left
// alone); with Always (after a publish, whose output may be installed elsewhere, as the Distillery.Tool package is) it
// is applied everywhere, harmless on a newer libstdc++ where the unversioned symbol binds as before. It is idempotent (a patched file is recognised and not rewritten), and refuses to touch a file where the version is
// bound to any other symbol, because then the library would really need the newer libstdc++.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class PatchLibTorchSharp : Task
{
    const string NeededVersion = "GLIBCXX_3.4.32";
    const string UnusedSymbol = "_ZSt21ios_base_library_initv";
    const uint ShtDynsym = 11, ShtGnuVerneed = 0x6ffffffe, ShtGnuVersym = 0x6fffffff;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Folders searched (recursively) for libLibTorchSharp.so.</summary>
    [Required] public string[] Directories { get; set; } = Array.Empty<string>();

    /// <summary>Patch even when this machine's libstdc++ provides the version (output meant for other machines).</summary>
    public bool Always { get; set; }

    public override bool Execute()
    {
        if (!System.Runtime.InteropServices.RuntimeInformation.IsOSPlatform(System.Runtime.InteropServices.OSPlatform.Linux)) return true;
        if (!Always)
        {
            string? systemLib = FindSystemLibStdCxx();
            if (systemLib == null) { Log.LogMessage(MessageImportance.Low, "libstdc++.so.6 not found; TorchSharp left as is."); return true; }
            if (Contains(File.ReadAllBytes(systemLib), Encoding.ASCII.GetBytes(NeededVersion + "\0")))
            {
                Log.LogMessage(MessageImportance.Low, $"{systemLib} provides {NeededVersion}; no TorchSharp patch needed.");
                return true;
            }
        }
        foreach (string dir in Directories)
        {
            if (!Directory.Exists(dir)) continue;
            foreach (string file in Directory.EnumerateFiles(dir, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                try { PatchFile(file); }
                catch (Exception e) { Log.LogError($"{file}: cannot patch for {NeededVersion}: {e.Message}"); return false; }
            }
        }
        return !Log.HasLoggedErrors;
    }

    static string? FindSystemLibStdCxx()
    {
        foreach (string p in new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                                     "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6" })
            if (File.Exists(p)) return p;
        return null;
    }

    static bool Contains(byte[] haystack, byte[] needle)
    {
        // The task compiles against netstandard (no span search), so a plain scan; libstdc++ is ~2 MB.
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (haystack[i] != needle[0]) continue;
            int k = 1; while (k < needle.Length && haystack[i + k] == needle[k]) k++;
            if (k == needle.Length) return true;
        }
        return false;
    }

    void PatchFile(string path)
    {
        byte[] elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("not a 64-bit little-endian ELF file");
        ulong shoff = U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
        Check(shoff + (ulong)shentsize * (ulong)shnum <= (ulong)elf.Length, "section headers beyond end of file");

        (ulong off, ulong size, uint link, ulong entsize) versym = default, verneed = default, dynsym = default;
        for (int i = 0; i < shnum; i++)
        {
            int h = checked((int)shoff + i * shentsize);
            uint type = U32(elf, h + 4);
            var info = (U64(elf, h + 0x18), U64(elf, h + 0x20), U32(elf, h + 0x28), U64(elf, h + 0x38));
            if (type == ShtGnuVersym) versym = info;
            else if (type == ShtGnuVerneed) verneed = info;
            else if (type == ShtDynsym) dynsym = info;
        }
        Check(versym.size > 0 && verneed.size > 0 && dynsym.size > 0, "no symbol-version sections");
        Check(verneed.link == dynsym.link, "version names and symbol names in different string tables");
        int strtabHeader = checked((int)shoff + (int)dynsym.link * shentsize);
        ulong strOff = U64(elf, strtabHeader + 0x18), strSize = U64(elf, strtabHeader + 0x20);
        Check(strOff + strSize <= (ulong)elf.Length && versym.off + versym.size <= (ulong)elf.Length
              && verneed.off + verneed.size <= (ulong)elf.Length && dynsym.off + dynsym.size <= (ulong)elf.Length, "section beyond end of file");
        string Str(uint o) { Check(o < strSize, "string offset out of range"); int s = checked((int)(strOff + o)); int e = Array.IndexOf(elf, (byte)0, s); return Encoding.ASCII.GetString(elf, s, e - s); }

        // .gnu.version_r: Elf64_Verneed {u16 version, u16 cnt, u32 file, u32 aux, u32 next} → Elf64_Vernaux {u32 hash, u16 flags, u16 other, u32 name, u32 next}
        int auxAt = -1; ushort versionIndex = 0;
        for (long need = (long)verneed.off, guard = 0; guard < 1000; guard++)
        {
            int cnt = U16(elf, (int)need + 2);
            long aux = need + U32(elf, (int)need + 8);
            for (int k = 0; k < cnt; k++)
            {
                if (Str(U32(elf, (int)aux + 8)) == NeededVersion) { auxAt = (int)aux; versionIndex = U16(elf, (int)aux + 6); }
                uint nextAux = U32(elf, (int)aux + 12); if (nextAux == 0) break; aux += nextAux;
            }
            uint next = U32(elf, (int)need + 12); if (next == 0) break; need += next;
        }
        if (auxAt < 0) { Log.LogMessage(MessageImportance.Low, $"{path} does not need {NeededVersion}."); return; }

        bool changed = false;
        int symbols = (int)(dynsym.size / 24);
        for (int s = 0; s < symbols; s++)
        {
            int versymAt = (int)versym.off + 2 * s;
            if ((U16(elf, versymAt) & 0x7fff) != versionIndex) continue;
            string name = Str(U32(elf, (int)dynsym.off + 24 * s));
            if (name != UnusedSymbol)
                throw new InvalidDataException($"symbol {name} also needs {NeededVersion}; install a libstdc++ that provides it (GCC 13+)");
            elf[versymAt] = 1; elf[versymAt + 1] = 0; changed = true;
        }
        ushort flags = U16(elf, auxAt + 4);
        if ((flags & VerFlgWeak) == 0) { flags |= VerFlgWeak; elf[auxAt + 4] = (byte)flags; elf[auxAt + 5] = (byte)(flags >> 8); changed = true; }
        if (!changed) return;
        // Write the whole image beside it first, so a failure while building the patch never leaves a half-written library.
        string temp = path + ".patching";
        File.WriteAllBytes(temp, elf);
        File.Copy(temp, path, overwrite: true);
        File.Delete(temp);
        Log.LogMessage(MessageImportance.High, $"Patched {path}: {UnusedSymbol} unversioned, {NeededVersion} weak ({(Always ? "output for any libstdc++" : "system libstdc++ lacks it")}).");
    }

    static void Check(bool ok, string what) { if (!ok) throw new InvalidDataException(what); }
    static ushort U16(byte[] b, int o) => BitConverter.ToUInt16(b, o);
    static uint U32(byte[] b, int o) => BitConverter.ToUInt32(b, o);
    static ulong U64(byte[] b, long o) => BitConverter.ToUInt64(b, (int)o);
}
