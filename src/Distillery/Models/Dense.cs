using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Distillery.Models;

/// <summary>The arithmetic a <see cref="Dense"/> layer's matrix product runs in.</summary>
public enum ComputePrecision
{
    /// <summary>fp32 throughout.</summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("fp32")]
    Float32,
    /// <summary>
    /// Mixed precision: the matmul inputs are cast to bf16 (the weights stay fp32 masters, so optimizers update fp32),
    /// the product is cast back to fp32, and the bias is added in fp32. TorchSharp has no autocast; this is its manual
    /// equivalent for the layers that dominate BERT's cost.
    /// </summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("bf16")]
    BFloat16,
    /// <summary>
    /// A request, not an arithmetic: <see cref="BFloat16"/> where the CPU has native bf16 (AVX512-BF16 or AMX-BF16),
    /// <see cref="Float32"/> elsewhere (libtorch emulates bf16 there, several times slower than fp32). Runs resolve it
    /// once at their start (<see cref="ComputePrecisions.ResolveForRun"/>) and record what they ran; a module never
    /// computes in "auto". Last in the enum so that a default-initialised value stays <see cref="Float32"/>.
    /// </summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("auto")]
    Auto,
}

/// <summary>Names of <see cref="ComputePrecision"/> and the resolution of <see cref="ComputePrecision.Auto"/>.</summary>
public static class ComputePrecisions
{
    /// <summary>"fp32", "bf16" or "auto": the names on the command line and in run files.</summary>
    public static string Name(ComputePrecision precision) => precision switch
    {
        ComputePrecision.Float32 => "fp32",
        ComputePrecision.BFloat16 => "bf16",
        ComputePrecision.Auto => "auto",
        _ => throw new ArgumentOutOfRangeException(nameof(precision), precision, "unknown precision"),
    };

    /// <summary>Parses "fp32", "bf16" or "auto"; anything else is one line naming <paramref name="what"/>.</summary>
    public static ComputePrecision Parse(string text, string what) =>
        Enum.GetValues<ComputePrecision>().Cast<ComputePrecision?>().FirstOrDefault(p => Name(p!.Value) == text)
        ?? throw new ArgumentException($"{what}: unknown precision \"{text}\" (known: fp32, bf16, auto)");

    /// <summary>
    /// The arithmetic <paramref name="requested"/> means on <paramref name="cpu"/>: <see cref="ComputePrecision.Auto"/>
    /// is bf16 with native bf16 and fp32 without; fp32 and bf16 are themselves. The warning is one line when bf16 was
    /// asked for explicitly on a CPU that only emulates it (the run goes ahead, slower); otherwise null.
    /// </summary>
    public static (ComputePrecision Precision, string? Warning) Resolve(ComputePrecision requested, Runtime.CpuFeatures cpu) => requested switch
    {
        ComputePrecision.Auto => (cpu.HasNativeBf16 ? ComputePrecision.BFloat16 : ComputePrecision.Float32, null),
        ComputePrecision.BFloat16 when !cpu.HasNativeBf16 =>
            (ComputePrecision.BFloat16, "bf16 requested on a CPU without native bf16 (no avx512_bf16/amx_bf16): libtorch emulates it, " +
                "expect it to be several times slower than fp32 (--precision auto picks fp32 here)"),
        _ => (requested, null),
    };

    private static int warned;

    /// <summary>
    /// <see cref="Resolve"/> on this machine (<see cref="Runtime.CpuFeatures.Current"/>), for the start of a run: the
    /// emulated-bf16 warning goes to <paramref name="warn"/> at most once per process, however many runs ask.
    /// </summary>
    public static ComputePrecision ResolveForRun(ComputePrecision requested, Action<string>? warn)
    {
        var (precision, warning) = Resolve(requested, Runtime.CpuFeatures.Current);
        if (warning != null && warn != null && Interlocked.Exchange(ref warned, 1) == 0) warn(warning);
        return precision;
    }
}

/// <summary>A module whose matrix products can run in another precision (set model-wide by <see cref="BertTaskModel.SetPrecision(ComputePrecision)"/>).</summary>
public interface IPrecisionSwitchable
{
    /// <summary>Arithmetic of the module's matrix products.</summary>
    ComputePrecision Precision { get; set; }
}

/// <summary>
/// A fully connected layer, y = x Wᵀ + b, with the state-dict names of <c>torch.nn.Linear</c> (<c>weight</c> [out, in],
/// <c>bias</c> [out]). Distillery uses it instead of <see cref="Linear"/> because every matmul of the model must be able
/// to switch precision (bf16 training and inference) and to fake-quantize its weight and input (quantization-aware
/// training, see <see cref="FakeQuantize"/>). Either dimension may be 0 (a layer pruned to no heads or no FFN neurons): the output is then the bias alone.
/// </summary>
public sealed class Dense : nn.Module<Tensor, Tensor>, IPrecisionSwitchable
{
    private Parameter weight;
    private Parameter? bias;

    /// <summary>Input features.</summary>
    public long InFeatures => weight.shape[1];
    /// <summary>Output features.</summary>
    public long OutFeatures => weight.shape[0];
    /// <summary>Weight [out, in].</summary>
    public Parameter Weight => weight;
    /// <summary>Bias [out], or null.</summary>
    public Parameter? Bias => bias;
    /// <summary>Arithmetic of the matrix product; see <see cref="ComputePrecision"/>.</summary>
    public ComputePrecision Precision { get; set; } = ComputePrecision.Float32;
    /// <summary>
    /// Quantization-aware training: when set, the forward pass multiplies int8 fake-quantized copies of the weight
    /// (symmetric, per output channel, on the grid of this <see cref="Numerics.Int8Scheme"/>: 7-bit or 8-bit) and of the
    /// input (asymmetric uint8, per tensor, range of the current input), with a straight-through gradient to the fp32
    /// weight and input; the bias stays fp32. This simulates the exporter's dynamic int8 graph of the same scheme (see
    /// <see cref="Numerics.FakeQuant"/>). Default null (off): the layer is then exactly
    /// <see cref="Linear(Tensor, Tensor, Tensor?, ComputePrecision)"/>.
    /// </summary>
    public Numerics.Int8Scheme? FakeQuantize { get; set; }

    /// <summary>A layer with uninitialised (empty) parameters; models initialise them explicitly.</summary>
    public Dense(long inFeatures, long outFeatures, bool hasBias = true) : base(nameof(Dense))
    {
        weight = new Parameter(empty(outFeatures, inFeatures));
        bias = hasBias ? new Parameter(zeros(outFeatures)) : null;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (FakeQuantize is not { } scheme) return Linear(input, weight, bias, Precision);
        using var scope = NewDisposeScope();
        var x = Numerics.FakeQuant.ActivationPerTensor(input);          // [.., in] on the uint8 grid of this input
        var w = Numerics.FakeQuant.WeightPerChannel(weight, scheme);    // [out, in] on the scheme's grid of each row
        return Linear(x, w, bias, Precision).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// y = x Wᵀ + b in <paramref name="precision"/>: for bf16, the product of bf16 copies of x [.., in] and W [out, in]
    /// (the kernel accumulates in fp32), widened back to fp32, plus the fp32 bias. Gradients flow to the fp32 W and b.
    /// </summary>
    public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias, ComputePrecision precision)
    {
        if (precision == ComputePrecision.Auto)
            throw new ArgumentException("precision auto must be resolved before a layer runs (ComputePrecisions.ResolveForRun)", nameof(precision));
        if (precision == ComputePrecision.Float32 || input.dtype != ScalarType.Float32)
            return nn.functional.linear(input, weight, bias);
        using var scope = NewDisposeScope();
        var product = nn.functional.linear(input.to(ScalarType.BFloat16), weight.to(ScalarType.BFloat16)).to(ScalarType.Float32);
        var result = bias is null ? product : product.add_(bias);
        return result.MoveToOuterDisposeScope();
    }
}
