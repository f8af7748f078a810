// Dynamic post-training quantization: the fp32 model exported as the int8 ONNX graph, no training. The scheme (int8
// per-channel weights, uint8 per-tensor activations quantized at run time, word embeddings int8 per row) is the
// exporter's; see Export/Int8Quantization.cs. Quantization-aware training (Qat.cs) trains for the same graph.
using Distillery.Export;
using Distillery.Models;
using Distillery.Training;

namespace Distillery.Quantization;

/// <summary>Post-training dynamic int8 quantization of a model folder to an ONNX file.</summary>
public static class DynamicQuantization
{
    /// <summary>
    /// Loads <paramref name="modelDir"/> (with the head its config names) and writes its int8 ONNX graph to
    /// <paramref name="onnxPath"/>. Parameters the folder lacks (an untrained head) are reported through
    /// <paramref name="events"/>, as a load reports them.
    /// </summary>
    public static void Export(string modelDir, string onnxPath, int opset = 17, RunEvents? events = null)
    {
        if (Directory.Exists(onnxPath)) throw new ArgumentException($"{onnxPath}: is a folder; the int8 graph is one file (e.g. model.int8.onnx)");
        var (model, report) = BertCheckpoint.Load(modelDir);
        using (model)
        {
            foreach (var warning in report.Warnings()) events?.Message?.Invoke($"{modelDir}: {warning}");
            string? dir = Path.GetDirectoryName(Path.GetFullPath(onnxPath));
            if (dir != null) Directory.CreateDirectory(dir);
            OnnxExporter.Export(model, onnxPath, new OnnxExportOptions { Int8 = true, Opset = opset });
        }
    }
}
