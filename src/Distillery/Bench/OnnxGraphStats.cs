// What ONNX Runtime actually runs: the graph after its own optimizations (ORT_ENABLE_ALL), not the graph in the file.
// Whether its transformer fusions fired (Attention, SkipLayerNormalization, ...) decides most of an ONNX row's speed,
// so the bench records the op types of every ONNX row's optimized graph, and the export tests assert on them.
using Distillery.Export.Onnx;
using Distillery.Inference;
using Microsoft.ML.OnnxRuntime;

namespace Distillery.Bench;

/// <summary>Counts the op types of the graph ONNX Runtime runs.</summary>
public static class OnnxGraphStats
{
    /// <summary>
    /// Loads <paramref name="path"/> with the session options of the bench and inference
    /// (<see cref="OnnxRuntimeBackend.SessionOptionsFor"/>), has ONNX Runtime save the optimized graph to a temporary
    /// file, and returns each op type with its count, most frequent first. The temporary file is deleted.
    /// </summary>
    public static IReadOnlyDictionary<string, int> OptimizedOpCounts(string path, int? threads = null)
    {
        string optimized = Path.Combine(Path.GetTempPath(), $"distillery-optimized-{Guid.NewGuid():N}.onnx");
        try
        {
            using (var options = OnnxRuntimeBackend.SessionOptionsFor(threads))
            {
                options.OptimizedModelFilePath = optimized;
                // Saving an ORT_ENABLE_ALL graph logs a warning that it is machine-specific; we only read it back here.
                options.LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR;
                using var _ = new InferenceSession(path, options);
            }
            ModelProto model;
            using (var stream = File.OpenRead(optimized)) model = ModelProto.Parser.ParseFrom(stream);
            return model.Graph.Node.GroupBy(n => n.OpType).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.Count());
        }
        finally
        {
            File.Delete(optimized);
        }
    }
}
