// What this CPU can do, in the few respects that decide which of Distillery's arithmetic is fast and which is exact:
//   * int8: ONNX Runtime's x86 int8 GEMM (MLAS, uint8 activations × int8 weights) multiplies with vpmaddubsw on AVX2
//     and AVX-512 CPUs without VNNI, which adds two u8·s8 products into an int16 WITH saturation (255·127·2 > 32767);
//     AVX512-VNNI, AVX-VNNI and AMX-INT8 accumulate u8·s8 products straight into int32 (vpdpbusd, tdpbusd) and never
//     saturate. Numerics/Int8Quantization's default 7-bit weights are exact on both (see Int8Scheme).
//   * bf16: libtorch runs bf16 matmuls natively only with AVX512-BF16 or AMX-BF16; elsewhere it converts to fp32 and
//     back around every product, which is several times slower than fp32 (ComputePrecision.Auto picks fp32 there).
// The flags are those both Linux's /proc/cpuinfo (what the kernel enabled, so AVX-512/AMX state the OS does not save is
// not reported) and CPUID (what ONNX Runtime and libtorch dispatch on; through System.Runtime.Intrinsics.X86, gated by
// what .NET says the OS supports) report; CPUID alone elsewhere.
// This folder depends on nothing else in Distillery, so any folder may use it without creating a cycle.
using System.Globalization;
using System.Runtime.InteropServices;
using X86 = System.Runtime.Intrinsics.X86;
using TorchSharp;

namespace Distillery.Runtime;

/// <summary>The CPU features that decide Distillery's int8 and bf16 behaviour, and where they were read.</summary>
public sealed record CpuFeatures
{
    /// <summary>The CPU's model name ("unknown CPU" when the OS does not say).</summary>
    public string Model { get; init; } = "unknown CPU";
    /// <summary>AVX2 (256-bit integer SIMD; ONNX Runtime's baseline x86 int8 kernel).</summary>
    public bool Avx2 { get; init; }
    /// <summary>AVX-512 Foundation.</summary>
    public bool Avx512F { get; init; }
    /// <summary>AVX512-VNNI (vpdpbusd on 512-bit registers: u8·s8 dot products accumulated in int32).</summary>
    public bool Avx512Vnni { get; init; }
    /// <summary>AVX-VNNI (the same instruction, VEX-encoded, on CPUs such as Alder Lake that lack AVX-512).</summary>
    public bool AvxVnni { get; init; }
    /// <summary>AVX512-BF16 (bf16 dot products: vdpbf16ps).</summary>
    public bool Avx512Bf16 { get; init; }
    /// <summary>AMX-BF16 (bf16 tile matmuls).</summary>
    public bool AmxBf16 { get; init; }
    /// <summary>AMX-INT8 (int8 tile matmuls, int32 accumulation).</summary>
    public bool AmxInt8 { get; init; }
    /// <summary>Where the flags were read: "/proc/cpuinfo+cpuid" (both, intersected), "/proc/cpuinfo" or "cpuid".</summary>
    public string Source { get; init; } = "none";

    /// <summary>
    /// An int8 dot-product instruction that accumulates u8·s8 products in int32 (AVX512-VNNI, AVX-VNNI or AMX-INT8):
    /// ONNX Runtime's int8 GEMM is then exact for full 8-bit weights; without one it saturates in int16 for them.
    /// </summary>
    public bool HasInt8DotProduct => Avx512Vnni || AvxVnni || AmxInt8;

    /// <summary>Native bf16 arithmetic (AVX512-BF16 or AMX-BF16); without it libtorch emulates bf16 matmuls, slowly.</summary>
    public bool HasNativeBf16 => Avx512Bf16 || AmxBf16;

    private static readonly Lazy<CpuFeatures> current = new(Detect);

    /// <summary>This machine's features, read once per process.</summary>
    public static CpuFeatures Current => current.Value;

    /// <summary>
    /// The features of this machine: those that both /proc/cpuinfo (what the kernel enabled) and CPUID (what ONNX
    /// Runtime's MLAS and libtorch dispatch on) report; CPUID alone where there is no /proc/cpuinfo. Why both: the two
    /// disagree under emulators and some hypervisors (qemu -cpu EPYC-Milan on a Sapphire Rapids host shows the host's
    /// avx512_vnni in /proc/cpuinfo, while CPUID, and so ONNX Runtime, sees an AVX2-only CPU), and a feature the kernel
    /// has not enabled is unusable whatever CPUID says. The model name is CPUID's brand string where it has one.
    /// </summary>
    public static CpuFeatures Detect()
    {
        var cpuid = FromCpuid();
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                var parsed = FromCpuInfo(File.ReadAllText("/proc/cpuinfo"));
                if (parsed.Source != "none") return cpuid.Source == "none" ? parsed : parsed.Intersect(cpuid);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return cpuid;
    }

    /// <summary>
    /// The features both readings report, <paramref name="cpuid"/>'s model name when it has a brand string, and the two
    /// sources named (e.g. "/proc/cpuinfo+cpuid").
    /// </summary>
    public CpuFeatures Intersect(CpuFeatures cpuid) => new()
    {
        Model = cpuid.Model is "" or "unknown CPU" || cpuid.Model == RuntimeInformation.ProcessArchitecture.ToString() ? Model : cpuid.Model,
        Avx2 = Avx2 && cpuid.Avx2,
        Avx512F = Avx512F && cpuid.Avx512F,
        Avx512Vnni = Avx512Vnni && cpuid.Avx512Vnni,
        AvxVnni = AvxVnni && cpuid.AvxVnni,
        Avx512Bf16 = Avx512Bf16 && cpuid.Avx512Bf16,
        AmxBf16 = AmxBf16 && cpuid.AmxBf16,
        AmxInt8 = AmxInt8 && cpuid.AmxInt8,
        Source = $"{Source}+{cpuid.Source}",
    };

    /// <summary>
    /// Parses the text of Linux's /proc/cpuinfo: the first processor's <c>model name</c> and <c>flags</c> lines (flag
    /// names as the kernel spells them: avx2, avx512f, avx512_vnni, avx_vnni, avx512_bf16, amx_bf16, amx_int8). Text
    /// without a flags line (another architecture's cpuinfo) gives no features and <see cref="Source"/> "none".
    /// </summary>
    public static CpuFeatures FromCpuInfo(string cpuinfo)
    {
        string? model = null;
        HashSet<string>? flags = null;
        foreach (string line in cpuinfo.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
            if (model == null && key == "model name") model = value;
            else if (flags == null && key == "flags") flags = new HashSet<string>(value.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);
            if (model != null && flags != null) break;
        }
        if (flags == null) return new CpuFeatures { Model = model ?? "unknown CPU" };
        return new CpuFeatures
        {
            Model = model ?? "unknown CPU",
            Avx2 = flags.Contains("avx2"),
            Avx512F = flags.Contains("avx512f"),
            Avx512Vnni = flags.Contains("avx512_vnni"),
            AvxVnni = flags.Contains("avx_vnni"),
            Avx512Bf16 = flags.Contains("avx512_bf16"),
            AmxBf16 = flags.Contains("amx_bf16"),
            AmxInt8 = flags.Contains("amx_int8"),
            Source = "/proc/cpuinfo",
        };
    }

    /// <summary>
    /// The features from CPUID leaf 7 (sub-leaves 0 and 1), each AVX-512 one counted only where .NET reports that the
    /// OS saves AVX-512 state (<see cref="X86.Avx512F.IsSupported"/>). AMX needs OS permission that CPUID does not show;
    /// it is reported as CPUID has it. Not an x86 CPU: no features.
    /// </summary>
    public static CpuFeatures FromCpuid()
    {
        string model = RuntimeInformation.ProcessArchitecture.ToString();
        if (!X86.X86Base.IsSupported) return new CpuFeatures { Model = model, Source = "none" };
        model = BrandString() ?? model;
        var (_, _, ecx0, edx0) = X86.X86Base.CpuId(7, 0);
        var (eax1, _, _, _) = X86.X86Base.CpuId(7, 1);
        static bool Bit(int register, int bit) => (register & (1 << bit)) != 0;
        bool avx512 = X86.Avx512F.IsSupported;
        return new CpuFeatures
        {
            Model = model,
            Avx2 = X86.Avx2.IsSupported,
            Avx512F = avx512,
            Avx512Vnni = avx512 && Bit(ecx0, 11),
            AvxVnni = X86.AvxVnni.IsSupported,
            Avx512Bf16 = avx512 && Bit(eax1, 5),
            AmxBf16 = Bit(edx0, 22),
            AmxInt8 = Bit(edx0, 25),
            Source = "cpuid",
        };
    }

    /// <summary>The CPU's brand string (CPUID leaves 0x80000002-4, 48 ASCII bytes), or null where CPUID has none.</summary>
    private static string? BrandString()
    {
        if ((uint)X86.X86Base.CpuId(unchecked((int)0x80000000), 0).Eax < 0x80000004) return null;
        var bytes = new byte[48];
        for (int leaf = 0; leaf < 3; leaf++)
        {
            var (a, b, c, d) = X86.X86Base.CpuId(unchecked((int)0x80000002) + leaf, 0);
            int[] registers = [a, b, c, d];
            for (int r = 0; r < 4; r++) BitConverter.TryWriteBytes(bytes.AsSpan(leaf * 16 + r * 4, 4), registers[r]);
        }
        string brand = System.Text.Encoding.ASCII.GetString(bytes).TrimEnd('\0').Trim();
        return brand.Length == 0 ? null : brand;
    }

    /// <summary>
    /// The features as flag names, then what they mean here, e.g. "avx2 avx512f avx512_vnni (int8: VNNI; bf16: emulated)"
    /// or "avx2 (int8: no VNNI, 8-bit weights saturate; bf16: emulated)".
    /// </summary>
    public string Describe()
    {
        var names = new List<string>();
        if (Avx2) names.Add("avx2");
        if (Avx512F) names.Add("avx512f");
        if (Avx512Vnni) names.Add("avx512_vnni");
        if (AvxVnni) names.Add("avx_vnni");
        if (Avx512Bf16) names.Add("avx512_bf16");
        if (AmxBf16) names.Add("amx_bf16");
        if (AmxInt8) names.Add("amx_int8");
        string flags = names.Count == 0 ? "none of avx2/avx512/vnni/bf16/amx" : string.Join(' ', names);
        string int8 = HasInt8DotProduct ? "VNNI" : "no VNNI, 8-bit weights saturate";
        string bf16 = HasNativeBf16 ? "native" : "emulated";
        return $"{flags} (int8: {int8}; bf16: {bf16})";
    }

    /// <summary>
    /// One line for results and run records: CPU model, logical cores, <see cref="Describe"/>'s features, torch's intra-op
    /// threads (and ONNX Runtime's, when <paramref name="onnxRuntimeThreads"/> says how many a session was given), OS,
    /// .NET and the libraries.
    /// </summary>
    public static string DescribeMachine(int? onnxRuntimeThreads = null)
    {
        var cpu = Current;
        string threads = onnxRuntimeThreads is int ort
            ? $"{torch.get_num_threads()} torch threads, {ort.ToString(CultureInfo.InvariantCulture)} ONNX Runtime threads"
            : $"{torch.get_num_threads()} torch threads";
        return $"{cpu.Model}, {Environment.ProcessorCount} cores, features {cpu.Describe()}, {threads}, {RuntimeInformation.OSDescription.Trim()}, .NET {Environment.Version}, TorchSharp";
    }
}
