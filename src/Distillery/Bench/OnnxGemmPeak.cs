// ONNX Runtime's fp32 GEMM limit for bench rows (libtorch's, and the records, are in Runtime/GemmPeak.cs): a MatMul-only
// graph with the weight as an initializer, pre-packed once as a model's weights are, and the model rows' session options.
using Distillery.Export;
using Distillery.Export.Onnx;
using Distillery.Runtime;
using Microsoft.ML.OnnxRuntime;
using DataType = Distillery.Export.Onnx.TensorProto.Types.DataType;

namespace Distillery.Bench;

/// <summary>Measures ONNX Runtime's <see cref="GemmPeak"/>.</summary>
public static class OnnxGemmPeaks
{
    /// <summary>
    /// ONNX Runtime running a one-MatMul graph per shape (A [M, K] input, B [K, N] initializer) with the session
    /// options of the model rows (<see cref="Inference.OnnxRuntimeBackend.SessionOptionsFor"/>), <paramref name="threads"/>
    /// intra-op threads; timing as <see cref="GemmPeaks.Torch"/>.
    /// </summary>
    public static GemmPeak OnnxRuntime(int threads, IReadOnlyList<GemmShape>? shapes = null, double secondsPerShape = 0.5)
    {
        shapes ??= GemmPeaks.Representative;
        var results = new List<GemmMeasurement>();
        foreach (var shape in shapes)
        {
            var random = new Random(0);
            var weight = new float[(long)shape.K * shape.N];
            for (int i = 0; i < weight.Length; i++) weight[i] = (float)(random.NextDouble() - 0.5);
            var input = new float[(long)shape.M * shape.K];
            for (int i = 0; i < input.Length; i++) input[i] = (float)(random.NextDouble() - 0.5);
            var g = new OnnxGraphBuilder();
            string a = g.Input("a", DataType.Float, "m", shape.K);
            string y = g.Node("MatMul", [a, g.Initializer("b", weight, shape.K, shape.N)], "y");
            g.Output(y, DataType.Float, "m", shape.N);
            var model = new ModelProto { IrVersion = 8, ProducerName = "distillery-gemm-peak", Graph = g.Graph };
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
            using var options = Inference.OnnxRuntimeBackend.SessionOptionsFor(threads);
            using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model), options);
            using var value = OrtValue.CreateTensorValueFromMemory(input, [shape.M, shape.K]);
            using var runOptions = new RunOptions();
            string[] inputNames = ["a"], outputNames = ["y"];
            results.Add(GemmPeaks.Time(shape, () => { using var outputs = session.Run(runOptions, inputNames, [value], outputNames); }, secondsPerShape));
        }
        return new GemmPeak("onnxruntime", threads, results);
    }

}
