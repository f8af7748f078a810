
namespace Distillery.Runtime;

/// <summary>A one-line description of the machine timings were taken on.</summary>
public static class Machine
{
    /// <summary>
    /// CPU model, core count, the CPU features that decide int8 exactness and bf16 speed, torch threads (and ONNX
    /// Runtime's when given), OS and runtime: <see cref="CpuFeatures.DescribeMachine"/>.
    /// </summary>
    public static string Describe(int? onnxRuntimeThreads = null) => CpuFeatures.DescribeMachine(onnxRuntimeThreads);
}
