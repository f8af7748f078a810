// Reads back what the exporter recorded in an .onnx file (head, config, weight format and int8 scheme), checking that
// the file is one this version of Distillery wrote and can serve: a graph written with an export option this version
// does not know is rejected with one line naming the file and the option, rather than run with the wrong assumptions.
using System.Text.Json;
using System.Text.Json.Nodes;
using Distillery.Export.Onnx;
using Distillery.Models;
using Distillery.Numerics;
using Google.Protobuf;

namespace Distillery.Export;

/// <summary>What an exported graph is: its head, the config of the model it came from, and how its weights are stored.</summary>
/// <param name="Task">The head (decides the outputs: <c>logits</c>, or <c>start_logits</c>/<c>end_logits</c>).</param>
/// <param name="Config">The model's config.json, as recorded at export.</param>
/// <param name="Int8Scheme">
/// For the int8 dynamic-quantized graph, its weight grid (<see cref="OnnxExporter.Int8SchemeKey"/>; int8 graphs written
/// before that key existed are <see cref="Numerics.Int8Scheme.Full8Bit"/>); null for an fp32 graph.
/// </param>
/// <param name="Opset">The ai.onnx opset the graph declares.</param>
/// <param name="Graph">
/// Fused (ONNX Runtime contrib operators) or plain (standard operators), from <see cref="OnnxExporter.GraphKey"/>;
/// graphs written before that key existed are plain.
/// </param>
public sealed record OnnxModelInfo(BertTask Task, BertConfig Config, Int8Scheme? Int8Scheme, int Opset, OnnxGraphKind Graph = OnnxGraphKind.Plain)
{
    /// <summary>Whether the graph is the int8 dynamic-quantized one.</summary>
    public bool Int8 => Int8Scheme is not null;

    /// <summary>"fp32", or "int8 (7bit weights)" / "int8 (8bit weights)".</summary>
    public string Format => Int8Scheme is { } scheme ? $"int8 ({Int8Quantization.Name(scheme)} weights)" : "fp32";

    /// <summary>
    /// Reads <paramref name="path"/>'s metadata. Throws <see cref="FileNotFoundException"/> when it is missing and
    /// <see cref="InvalidDataException"/> (one line, naming the file) when it is not an ONNX model, was not written by
    /// Distillery, or records a task, weight format or int8 weight scheme this version does not know.
    /// </summary>
    public static OnnxModelInfo Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: ONNX file not found", path);
        ModelProto model;
        try
        {
            using var stream = File.OpenRead(path);
            model = ModelProto.Parser.ParseFrom(stream);
        }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"{path}: not an ONNX model ({e.Message.Split('\n')[0]})"); }
        if (model.Graph is null) throw new InvalidDataException($"{path}: not an ONNX model (no graph)");

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in model.MetadataProps) metadata[entry.Key] = entry.Value;
        string Require(string key) => metadata.TryGetValue(key, out var value) ? value
            : throw new InvalidDataException($"{path}: no {key} metadata (not exported by Distillery)");

        string taskName = Require(OnnxExporter.TaskKey);
        if (!Enum.TryParse<BertTask>(taskName, ignoreCase: false, out var task) || !Enum.IsDefined(task) || int.TryParse(taskName, out _))
            throw new InvalidDataException($"{path}: {OnnxExporter.TaskKey} \"{taskName}\" is not a task this version knows ({string.Join(", ", Enum.GetNames<BertTask>())})");
        string quantization = Require(OnnxExporter.QuantizationKey);
        bool int8 = quantization switch
        {
            "fp32" => false,
            "int8" => true,
            _ => throw new InvalidDataException($"{path}: {OnnxExporter.QuantizationKey} \"{quantization}\" is not an export option this version knows (fp32, int8)"),
        };
        Int8Scheme? scheme = null;
        if (metadata.TryGetValue(OnnxExporter.Int8SchemeKey, out var schemeName))
        {
            if (!int8) throw new InvalidDataException($"{path}: an fp32 graph with {OnnxExporter.Int8SchemeKey} \"{schemeName}\" (not a graph this version wrote)");
            scheme = Int8Quantization.TryParse(schemeName)
                ?? throw new InvalidDataException($"{path}: {OnnxExporter.Int8SchemeKey} \"{schemeName}\" is not an int8 weight scheme this version knows ({Int8Quantization.Names})");
        }
        else if (int8) scheme = Numerics.Int8Scheme.Full8Bit;   // exported before the scheme was recorded: 8-bit weights
        JsonNode? json;
        try { json = JsonNode.Parse(Require(OnnxExporter.ConfigKey), documentOptions: new JsonDocumentOptions { MaxDepth = 32 }); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {OnnxExporter.ConfigKey} is not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (json is not JsonObject obj) throw new InvalidDataException($"{path}: {OnnxExporter.ConfigKey} is not a JSON object");
        var config = BertConfig.FromJson(obj, $"{path} ({OnnxExporter.ConfigKey})");
        var graph = OnnxGraphKind.Plain;   // written before the key existed
        if (metadata.TryGetValue(OnnxExporter.GraphKey, out var graphName))
            graph = OnnxExporter.TryParseGraph(graphName)
                ?? throw new InvalidDataException($"{path}: {OnnxExporter.GraphKey} \"{graphName}\" is not a graph kind this version knows ({OnnxExporter.GraphNames})");
        var opset = model.OpsetImport.FirstOrDefault(o => string.IsNullOrEmpty(o.Domain))
            ?? throw new InvalidDataException($"{path}: declares no ai.onnx opset");
        return new OnnxModelInfo(task, config, scheme, (int)opset.Version, graph);
    }
}
