using Distillery.Export;
using Distillery.Export.Onnx;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Runtime;
using Distillery.Text;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Distillery.Tests;

/// <summary>
/// Portability of the int8 scheme, proved on any machine: a model of the integer arithmetic ONNX Runtime's x86 int8 GEMM
/// (MLAS, uint8 activations × int8 weights) runs on CPUs without VNNI, applied to extreme values and to the real int8
/// weights of exported graphs with the real quantized activations that reach them. On AVX2 (and AVX-512 without VNNI)
/// the kernel multiplies with vpmaddubsw, which adds the two products of adjacent k into an int16 with signed
/// saturation, then vpmaddwd widens pairs of those into int32 (exact). With the default 7-bit weights (|q| ≤ 64) the
/// model's result equals the exact int32 dot product everywhere; with 8-bit weights it does not, which is the accuracy
/// loss measured on an AVX2-only EPYC (issue 12), and what makes these tests able to fail. VNNI CPUs (vpdpbusd) and
/// AMX add every product in int32, so there both schemes are exact, as the graph-vs-simulation tests check where the
/// CPU has it; the model here stands in for the CPUs the suite may not run on.
/// </summary>
public sealed class Int8KernelTests(ITestOutputHelper output)
{
    /// <summary>vpmaddubsw's int16 signed saturation.</summary>
    static int SaturateInt16(int value) => Math.Clamp(value, short.MinValue, short.MaxValue);

    /// <summary>
    /// Σ_k a[k]·b[k] as the AVX2 u8·s8 kernel computes it: each adjacent pair (2j, 2j+1) of products saturated to int16
    /// (vpmaddubsw), the pairs summed in int32 (vpmaddwd with ones, then vpaddd). An odd K is padded with a zero, as
    /// MLAS pads its packed panels. Also returns how many pairs saturated.
    /// </summary>
    internal static (int Sum, int SaturatedPairs) Avx2DotProduct(ReadOnlySpan<byte> a, ReadOnlySpan<sbyte> b)
    {
        int sum = 0, saturated = 0;
        for (int k = 0; k < a.Length; k += 2)
        {
            int pair = a[k] * b[k] + (k + 1 < a.Length ? a[k + 1] * b[k + 1] : 0);
            int clipped = SaturateInt16(pair);
            if (clipped != pair) saturated++;
            sum += clipped;
        }
        return (sum, saturated);
    }

    /// <summary>Σ_k a[k]·b[k] in exact int32 arithmetic (what the scheme and its simulation assume).</summary>
    static int ExactDotProduct(ReadOnlySpan<byte> a, ReadOnlySpan<sbyte> b)
    {
        int sum = 0;
        for (int k = 0; k < a.Length; k++) sum += a[k] * b[k];
        return sum;
    }

    [Fact]
    public void KernelModelSaturatesOnlyPastTheInt16Range()
    {
        // The model itself: exact where every pair fits int16, clipped where one does not.
        Assert.Equal((255 * 64 * 2, 0), Avx2DotProduct([255, 255], [64, 64]));
        Assert.Equal((short.MaxValue, 1), Avx2DotProduct([255, 255], [127, 127]));
        Assert.Equal((short.MinValue, 1), Avx2DotProduct([255, 255], [-127, -127]));
        Assert.Equal((255 * 127, 0), Avx2DotProduct([255, 255], [127, 0]));
        Assert.Equal((3 * 5 + 7 * -2 + 255 * 64, 0), Avx2DotProduct([3, 7, 255], [5, -2, 64]));   // odd K
    }

    [Theory]
    [InlineData(Int8Scheme.Reduced7Bit, true)]
    [InlineData(Int8Scheme.Full8Bit, false)]
    public void ExtremeActivationsAndWeightsAreExactOnlyWith7BitWeights(Int8Scheme scheme, bool exact)
    {
        // The worst case: every activation code at 255 (a tensor's maximum), every weight at the scheme's ±max (a row's
        // largest magnitude), with a length of a real layer (768) and both signs.
        int max = Int8Quantization.WeightMax(scheme);
        var a = Enumerable.Repeat((byte)255, 768).ToArray();
        foreach (int sign in new[] { 1, -1 })
        {
            var b = Enumerable.Repeat((sbyte)(sign * max), 768).ToArray();
            var (kernel, saturated) = Avx2DotProduct(a, b);
            int reference = ExactDotProduct(a, b);
            output.WriteLine($"{scheme}, sign {sign}: kernel {kernel}, exact {reference}, saturated pairs {saturated}");
            Assert.Equal(exact, kernel == reference);
            Assert.Equal(exact, saturated == 0);
        }

        // Exhaustively over every pair of codes: the largest pair sum of the scheme is inside int16 only for 7-bit.
        bool anySaturates = false;
        for (int a0 = 0; a0 <= 255; a0 += 1)
            for (int w = -max; w <= max; w++)
                if (SaturateInt16(a0 * w + 255 * w) != a0 * w + 255 * w) anySaturates = true;
        Assert.Equal(!exact, anySaturates);

        // Random codes over the full ranges: the same verdict on 2,000 vectors of 64.
        var random = new Random(7);
        int mismatches = 0;
        for (int v = 0; v < 2000; v++)
        {
            var x = new byte[64];
            var y = new sbyte[64];
            for (int k = 0; k < 64; k++) { x[k] = (byte)random.Next(256); y[k] = (sbyte)random.Next(-max, max + 1); }
            if (Avx2DotProduct(x, y).Sum != ExactDotProduct(x, y)) mismatches++;
        }
        output.WriteLine($"{scheme}: {mismatches} of 2000 random dot products differ from exact");
        Assert.Equal(exact, mismatches == 0);
    }

    /// <summary>
    /// Exports <paramref name="model"/> with <paramref name="scheme"/>, runs <paramref name="batches"/> through the
    /// scheme's simulation (equal to the graph, so its matmul inputs are the graph's), quantizes each quantized matmul's
    /// input to uint8 codes as ONNX Runtime does, and multiplies them by the graph's own int8 weight initializer through
    /// the kernel model. Returns (dot products compared, how many differ from exact, pairs saturated, largest |weight code|).
    /// </summary>
    static (long Products, long Differ, long Saturated, int MaxCode) KernelOnExportedGraph(BertTaskModel model, Int8Scheme scheme, IEnumerable<TokenizedBatch> batches)
    {
        using var tmp = new TestData.TempDir();
        OnnxExporter.Export(model, tmp["int8.onnx"], new OnnxExportOptions { Int8 = true, Int8Scheme = scheme });
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(tmp["int8.onnx"]));
        Assert.Equal(Int8Quantization.Name(scheme), proto.MetadataProps.Single(m => m.Key == OnnxExporter.Int8SchemeKey).Value);
        // Every quantized matmul's weight (input 1 of DynamicQuantizeMatMul, and of QAttention for the fused graph's
        // Q|K|V): int8 [in, out], named "<layer>.weight_int8_t".
        var weights = proto.Graph.Node.Where(n => n.OpType is "DynamicQuantizeMatMul" or "QAttention")
            .Select(n => proto.Graph.Initializer.Single(t => t.Name == n.Input[1]))
            .ToDictionary(t => t.Name[..^".weight_int8_t".Length], t => (Dims: t.Dims.ToArray(), Codes: (sbyte[])(Array)t.RawData.ToByteArray()));
        Assert.Equal(4 * model.Config.NumHiddenLayers + 1, weights.Count);

        long products = 0, differ = 0, saturated = 0;
        int maxCode = weights.Values.Max(w => w.Codes.Max(c => Math.Abs((int)c)));
        foreach (var batch in batches)
        {
            var seen = new HashSet<string>();
            OnnxExportTests.SimulateInt8(model, batch, scheme, (name, x) =>
            {
                if (!seen.Add(name)) return;   // query, key and value: one fused matmul, one input
                var (dims, codes) = weights[name];
                long k = dims[0], n = dims[1];
                using var scope = NewDisposeScope();
                var activations = Int8Quantization.QuantizeActivations(x).Codes.reshape(-1, k).to(ScalarType.Byte).contiguous();   // [M, K]
                var a = activations.data<byte>().ToArray();
                long m = a.Length / k;
                var column = new sbyte[k];
                for (long j = 0; j < n; j++)
                {
                    for (long i = 0; i < k; i++) column[i] = codes[i * n + j];                   // B[:, j] of [K, N]
                    for (long r = 0; r < m; r++)
                    {
                        var row = a.AsSpan((int)(r * k), (int)k);
                        var (sum, pairs) = Avx2DotProduct(row, column);
                        products++;
                        saturated += pairs;
                        if (sum != ExactDotProduct(row, column)) differ++;
                    }
                }
            });
        }
        return (products, differ, saturated, maxCode);
    }

    [Theory]
    [InlineData(Int8Scheme.Reduced7Bit)]
    [InlineData(Int8Scheme.Full8Bit)]
    public void RealExportedWeightsAndActivationsAreExactWith7BitWeights(Int8Scheme scheme)
    {
        // A random classifier at 10x BERT's init scale and the HF parity fixture (the model whose int8 graph lost 0.5 in
        // logits on an AVX2-only CPU with 8-bit weights): every quantized matmul of every layer, on padded batches.
        using var random = OnnxExportTests.Model(BertTask.SequenceClassification, seed: 5);
        var randomResult = KernelOnExportedGraph(random, scheme, [OnnxExportTests.Batch(120, 9, 7, 12, 3), OnnxExportTests.Batch(120, 10, 20, 20)]);

        var (fixture, report) = BertCheckpoint.Load(TestData.Path("fixtures", "hf-bert-parity"), BertTask.SequenceClassification);
        (long Products, long Differ, long Saturated, int MaxCode) fixtureResult;
        using (fixture)
        {
            Assert.Empty(report.Initialized);
            fixture.eval();
            var batches = Enumerable.Range(0, 2).Select(i => OnnxExportTests.Batch(fixture.Config.VocabSize, 100 + i, Enumerable.Range(0, 20).Select(j => 4 + (i * 7 + j * 5) % 60).ToArray()));
            fixtureResult = KernelOnExportedGraph(fixture, scheme, batches);
        }
        foreach (var (name, r) in new[] { ("random classifier", randomResult), ("HF fixture", fixtureResult) })
            output.WriteLine($"{scheme}, {name}: {r.Products:N0} dot products, {r.Differ:N0} differ from exact, {r.Saturated:N0} saturated pairs; largest |weight code| {r.MaxCode}");

        Assert.Equal(Int8Quantization.WeightMax(scheme), randomResult.MaxCode);   // every row's largest weight sits at the scheme's limit
        Assert.True(randomResult.Products > 10_000 && fixtureResult.Products > 10_000);
        if (scheme == Int8Scheme.Reduced7Bit)
        {
            // Portable: what the AVX2 kernel computes is the exact product, on every matmul of both models.
            Assert.Equal(0, randomResult.Differ + fixtureResult.Differ);
            Assert.Equal(0, randomResult.Saturated + fixtureResult.Saturated);
        }
        else
        {
            // Not portable: on the fixture the same kernel clips real products (why its AVX2 run failed the accuracy bars).
            Assert.True(fixtureResult.Differ > 0, "8-bit weights never saturated on the fixture: the model of the kernel proves nothing");
        }
    }

    [Fact]
    public void CpuFeaturesAreReadFromCpuinfoFlags()
    {
        // An AVX2-only EPYC (the machine of issue 12), a Sapphire Rapids, and a cpuinfo with no flags (another architecture).
        const string epyc = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n\nprocessor\t: 1\n";
        var amd = CpuFeatures.FromCpuInfo(epyc);
        Assert.Equal("AMD EPYC 7B12", amd.Model);
        Assert.True(amd.Avx2);
        Assert.False(amd.Avx512F || amd.HasInt8DotProduct || amd.HasNativeBf16);
        Assert.Equal("avx2 (int8: no VNNI, 8-bit weights saturate; bf16: emulated)", amd.Describe());
        Assert.NotNull(Int8Quantization.PortabilityWarning(Int8Scheme.Full8Bit, amd));
        Assert.Null(Int8Quantization.PortabilityWarning(Int8Scheme.Reduced7Bit, amd));

        const string spr = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n";
        var intel = CpuFeatures.FromCpuInfo(spr);
        Assert.True(intel.Avx512F && intel.Avx512Vnni && intel.AvxVnni && intel.Avx512Bf16 && intel.AmxBf16 && intel.AmxInt8);
        Assert.True(intel.HasInt8DotProduct && intel.HasNativeBf16);
        Assert.Equal("avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_int8 (int8: VNNI; bf16: native)", intel.Describe());
        Assert.Null(Int8Quantization.PortabilityWarning(Int8Scheme.Full8Bit, intel));

        // Zen 4: VNNI and bf16 through AVX-512, no AMX.
        var zen4 = CpuFeatures.FromCpuInfo("flags : avx2 avx512f avx512_vnni avx512_bf16\n");
        Assert.True(zen4.HasInt8DotProduct && zen4.HasNativeBf16);

        var arm = CpuFeatures.FromCpuInfo("processor : 0\nFeatures : fp asimd\n");
        Assert.Equal("none", arm.Source);
        Assert.False(arm.Avx2);

        // Emulated or masked CPUs: /proc/cpuinfo shows the host's flags, CPUID (what ONNX Runtime dispatches on) an AVX2-only
        // CPU; only what both report counts, and CPUID's brand string names the CPU.
        var masked = intel.Intersect(new CpuFeatures { Model = "AMD EPYC-Milan Processor", Avx2 = true, Source = "cpuid" });
        Assert.Equal("AMD EPYC-Milan Processor", masked.Model);
        Assert.Equal("/proc/cpuinfo+cpuid", masked.Source);
        Assert.Equal("avx2 (int8: no VNNI, 8-bit weights saturate; bf16: emulated)", masked.Describe());
        Assert.Equal(intel.Describe(), intel.Intersect(intel with { Source = "cpuid" }).Describe());

        // This machine: some source answered, the detected features are ones CPUID has, and the bench/run records carry
        // its description.
        var current = CpuFeatures.Current;
        output.WriteLine($"{current.Source}: {CpuFeatures.DescribeMachine(onnxRuntimeThreads: 2)}; cpuid says {CpuFeatures.FromCpuid().Describe()}");
        Assert.Contains(current.Describe(), CpuFeatures.DescribeMachine());
        var cpuid = CpuFeatures.FromCpuid();
        Assert.Equal(current.Describe(), current.Intersect(cpuid).Describe());
        Assert.Contains("2 ONNX Runtime threads", CpuFeatures.DescribeMachine(onnxRuntimeThreads: 2));
    }

    [Fact]
    public void AutoPrecisionIsBf16OnlyWithNativeBf16AndExplicitBf16WarnsWhereEmulated()
    {
        var avx2 = CpuFeatures.FromCpuInfo("flags : avx2\n");
        var native = CpuFeatures.FromCpuInfo("flags : avx2 avx512f avx512_bf16\n");
        Assert.Equal((ComputePrecision.Float32, (string?)null), ComputePrecisions.Resolve(ComputePrecision.Auto, avx2));
        Assert.Equal((ComputePrecision.BFloat16, (string?)null), ComputePrecisions.Resolve(ComputePrecision.Auto, native));
        Assert.Equal((ComputePrecision.Float32, (string?)null), ComputePrecisions.Resolve(ComputePrecision.Float32, native));
        Assert.Equal((ComputePrecision.BFloat16, (string?)null), ComputePrecisions.Resolve(ComputePrecision.BFloat16, native));
        var (emulated, warning) = ComputePrecisions.Resolve(ComputePrecision.BFloat16, avx2);
        Assert.Equal(ComputePrecision.BFloat16, emulated);   // it runs as asked
        Assert.Contains("emulates", warning);
        Assert.DoesNotContain('\n', warning!);

        // A model never computes in "auto": it must be resolved first.
        using var model = OnnxExportTests.Model(BertTask.SequenceClassification);
        Assert.Contains("resolved", Assert.Throws<ArgumentException>(() => model.SetPrecision(ComputePrecision.Auto)).Message);
        Assert.NotEqual(ComputePrecision.Auto, ComputePrecisions.ResolveForRun(ComputePrecision.Auto, warn: null));
        Assert.Equal(ComputePrecision.Auto, ComputePrecisions.Parse("auto", "--precision"));
        Assert.Contains("known: fp32, bf16, auto", Assert.Throws<ArgumentException>(() => ComputePrecisions.Parse("fp16", "--precision")).Message);
    }
}
