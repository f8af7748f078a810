// Quantization-aware training (QAT) of a fine-tuned BERT for the dynamic int8 ONNX graph.
//   Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
//   CVPR 2018; Zafrir et al., "Q8BERT: Quantized 8Bit BERT", 2019 (fake quantization of every Linear's weight and
//   input during fine-tuning, straight-through estimator).
// What is simulated is exactly what the exporter quantizes: the six Linears of every encoder layer (query, key, value,
// attention output, intermediate, output) and the pooler dense, weights int8 per output channel on the grid of the
// run's Int8Scheme (7-bit by default: exact in ONNX Runtime on every x86-64 CPU) and inputs uint8 per tensor (see
// FakeQuant), and the word-embedding table, weight-only int8 per row. The scheme is recorded in the checkpoint's config
// (Int8Quantization.QatSchemeConfigKey) and the graph is exported with it, so training and graph cannot disagree. Attention matmuls, LayerNorms, the
// position and token-type embeddings and the task head's final layer stay fp32, in the graph and here. Without the
// embedding rows the simulation is not the graph: per-tensor activation scales move with any perturbation of the
// input, and on a small test model the fake-quantized forward was then no closer to the int8 graph than fp32 was;
// with them it matches the graph to ~1e-6 (QuantizationTests).
// Deviations from Q8BERT, and why: (1) QAT starts from an already fine-tuned fp32 model and trains briefly with a small
// learning rate (Q8BERT fine-tunes from the pre-trained model with fake quantization throughout): the fp32 model is the
// usual starting point here and the short run is cheap. (2) Activation ranges are the current tensor's, not an EMA, and
// activations are asymmetric uint8: that is the dynamic quantization ONNX Runtime runs, so the model trains for the
// graph that is shipped. (3) Optionally the loss is vanilla KD from a teacher (the fp32 model
// itself, or a larger one) instead of the labels: the simplest form of the distillation-aware quantization of
// TernaryBERT (Zhang et al., 2020).
using System.Text.Json.Nodes;
using Distillery.Distillation;
using Distillery.Export;
using Distillery.Models;
using Distillery.Numerics;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Distillery.Quantization;

/// <summary>Options of <c>distillery quantize --mode qat</c>.</summary>
public sealed record QatOptions
{
    /// <summary>The fine-tuned fp32 model folder (it must carry a trained head for <see cref="Task"/>).</summary>
    public required string Model { get; init; }
    /// <summary>The task and its data (written inline, as for fine-tuning).</summary>
    [JsonInline]
    public required TaskSpec Task { get; init; }
    /// <summary>Output folder: the QAT checkpoint (fp32 safetensors, config marked <c>distillery_qat</c>) and its int8 ONNX graph.</summary>
    public required string Out { get; init; }
    /// <summary>
    /// A fine-tuned teacher folder: when given, the loss is vanilla KD from it (<see cref="Kd"/>) instead of the labels
    /// alone. The teacher may be the fp32 model itself (quantization distillation) or a larger model on the same vocabulary.
    /// </summary>
    public string? Teacher { get; init; }
    /// <summary>KD temperature and soft-target weight (used with <see cref="Teacher"/>).</summary>
    public KdOptions Kd { get; init; } = new();
    /// <summary>
    /// Optimisation. QAT continues from a fine-tuned model, so it is short and gentle: one epoch at a small peak rate
    /// (2e-5, a fifth of Distillery's fine-tuning default), 10% warm-up, evaluated at the end. fp32 only (see
    /// <see cref="Validate"/>); precision auto means fp32 here.
    /// </summary>
    public TrainerOptions Trainer { get; init; } = new() { LearningRate = 2e-5, Epochs = 1, BatchSize = 32, WarmupRatio = 0.1, EvalEvery = 0, Precision = ComputePrecision.Float32 };
    /// <summary>Write the int8 ONNX graph (<see cref="OnnxFileName"/>) next to the checkpoint.</summary>
    public bool ExportOnnx { get; init; } = true;
    /// <summary>
    /// The int8 weight grid to train for and export with (default <see cref="Int8Scheme.Reduced7Bit"/>, exact on every
    /// x86-64 CPU; <see cref="Int8Scheme.Full8Bit"/> only for deployment on CPUs with VNNI or AMX-INT8).
    /// </summary>
    public Int8Scheme Int8Scheme { get; init; } = Int8Quantization.DefaultScheme;
    /// <summary>The graph's ai.onnx opset.</summary>
    public int Opset { get; init; } = 17;

    /// <summary>The int8 graph's file name inside <see cref="Out"/>.</summary>
    public const string OnnxFileName = "model.int8.onnx";

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming it.</summary>
    public QatOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new ArgumentException("qat: the model folder (--model) is empty");
        Task.Validate();
        if (string.IsNullOrWhiteSpace(Out)) throw new ArgumentException("qat: the output folder (--out) is empty");
        if (Teacher != null && string.IsNullOrWhiteSpace(Teacher)) throw new ArgumentException("qat: the teacher folder (--teacher) is empty");
        Kd.Validate();
        Trainer.Validate();
        new OnnxExportOptions { Int8 = true, Opset = Opset, Int8Scheme = Int8Scheme }.Validate();
        // bf16 would round the simulated int8 values (8 significant bits) once more: the forward pass would no longer
        // be the int8 graph's arithmetic. "auto" is accepted and means fp32 (Run resolves it so).
        if (Trainer.Precision == ComputePrecision.BFloat16)
            throw new ArgumentException("qat: precision must be fp32, not bf16: fake quantization simulates the int8 arithmetic in fp32");
        return this;
    }
}

/// <summary>Quantization-aware training: switch fake quantization on, train on the task, export the int8 graph.</summary>
public static class Qat
{
    /// <summary>The key <see cref="Run"/> adds to the checkpoint's <c>config.json</c> (with <see cref="Int8Quantization.QatSchemeConfigKey"/>).</summary>
    public const string ConfigMarker = Int8Quantization.QatMarkerConfigKey;

    /// <summary>
    /// The dense layers the int8 exporter quantizes, by state-dict name: per encoder layer
    /// <c>attention.self.{query,key,value}</c>, <c>attention.output.dense</c>, <c>intermediate.dense</c>,
    /// <c>output.dense</c>, then <c>bert.pooler.dense</c> when the model has a pooler. The task head's final layer and
    /// the MLM decoder are not among them (they stay fp32).
    /// </summary>
    public static IReadOnlyList<(string Name, Dense Layer)> Targets(BertTaskModel model)
    {
        var targets = new List<(string, Dense)>();
        var layers = model.Bert.Encoder.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            string p = $"bert.encoder.layer.{i}.";
            targets.Add((p + "attention.self.query", l.Attention.Self.Query));
            targets.Add((p + "attention.self.key", l.Attention.Self.Key));
            targets.Add((p + "attention.self.value", l.Attention.Self.Value));
            targets.Add((p + "attention.output.dense", l.Attention.Output.Dense));
            targets.Add((p + "intermediate.dense", l.Intermediate.Dense));
            targets.Add((p + "output.dense", l.Output.Dense));
        }
        if (model.Bert.Pooler is { } pooler)
        {
            // BertPooler keeps its dense private; it is its only child, registered as "dense".
            var dense = pooler.named_children().Single(c => c.name == "dense").module as Dense
                ?? throw new InvalidOperationException("the pooler's dense layer is not a Dense");
            targets.Add(("bert.pooler.dense", dense));
        }
        return targets;
    }

    /// <summary>
    /// Switches fake quantization on for exactly what the int8 exporter quantizes with <paramref name="scheme"/>: the
    /// dense layers of <see cref="Targets"/> (weights on the scheme's grid, and inputs) and the word-embedding lookup
    /// (weight only, 8-bit per row). Returns how many dense layers.
    /// </summary>
    public static int Enable(BertTaskModel model, Int8Scheme scheme)
    {
        var targets = Targets(model);
        foreach (var (_, layer) in targets) layer.FakeQuantize = scheme;
        model.Bert.Embeddings.FakeQuantizeWords = true;
        return targets.Count;
    }

    /// <summary>Switches fake quantization off everywhere in <paramref name="model"/> (plain fp32 forward again).</summary>
    public static void Disable(BertTaskModel model)
    {
        foreach (var module in model.modules())
            if (module is Dense dense) dense.FakeQuantize = null;
        model.Bert.Embeddings.FakeQuantizeWords = false;
    }

    /// <summary>
    /// Loads the fine-tuned model with its head, scores it on the dev data in fp32 and with fake quantization (the
    /// post-training int8 accuracy, simulated), trains it with fake quantization on (labels, or KD from
    /// <see cref="QatOptions.Teacher"/>), keeps the best dev checkpoint as measured with fake quantization on, writes
    /// it as an ordinary fp32 checkpoint whose config is marked <c>"distillery_qat": true</c> and
    /// <c>"distillery_qat_int8_weights": "7bit"</c> (or "8bit"), and (with <see cref="QatOptions.ExportOnnx"/>) its int8
    /// ONNX graph of the same scheme. Returns the run's metrics (also in <c>metrics.json</c>).
    /// </summary>
    public static JsonObject Run(QatOptions options, bool resume = false, RunEvents? events = null, bool overwrite = false)
    {
        events ??= new RunEvents();
        options.Validate();
        RunOutput.CheckFolder(options.Out, overwrite, resume, [options.Model, options.Teacher]);
        // The simulation is fp32 arithmetic whatever the CPU: "auto" is fp32 here, and the run records it so.
        if (options.Trainer.Precision == ComputePrecision.Auto) options = options with { Trainer = options.Trainer with { Precision = ComputePrecision.Float32 } };
        var scheme = options.Int8Scheme;
        if (Int8Quantization.PortabilityWarning(scheme, Runtime.CpuFeatures.Current) is string warning) events.Message?.Invoke($"warning: {warning}");
        using var trained = TaskPipeline.Load(options.Model, options.Task, options.Trainer.Seed, needTrain: true);
        var (model, data, tokenizer) = (trained.Model, trained.Data, trained.Tokenizer);
        events.Message?.Invoke(data.Description);
        using var teacherModel = options.Teacher is string t ? TaskPipeline.LoadTrained(t, data, options.Task) : null;
        ITrainingObjective<TaskBatch> objective = teacherModel is null
            ? new TaskObjective(model)
            : new TeacherGuidedObjective(new Teacher(teacherModel), model, options.Kd);

        // Where the run starts: the fp32 model, and the same weights through the simulated int8 graph (what dynamic
        // post-training quantization alone would give).
        var before = new JsonObject();
        if (!resume)
        {
            before["fp32"] = RunFiles.Metrics(trained.Score());
            Enable(model, scheme);
            before["int8_simulated"] = RunFiles.Metrics(trained.Score());
            events.Message?.Invoke($"before QAT: fp32 {before["fp32"]!.ToJsonString()}, int8 (simulated) {before["int8_simulated"]!.ToJsonString()}");
        }
        int quantized = Enable(model, scheme);
        events.Message?.Invoke($"fake quantization ({Int8Quantization.Name(scheme)} weights) on {quantized} dense layers{(teacherModel is null ? "" : $"; distilling from {options.Teacher}")}");

        var metrics = FineTuning.TrainOnTask(model, objective, () => model, data, tokenizer, options.Trainer, lengthBucketing: true,
            options.Out, "quantize", options.Task.ToString(), new { command = "quantize", mode = "qat", options }, resume, events);

        // The saved weights are the fp32 masters; the marker says they were trained for the int8 graph.
        string configPath = Path.Combine(options.Out, BertCheckpoint.ConfigFile);
        var saved = BertConfig.Load(configPath);
        (saved with { Extra = new Dictionary<string, JsonNode?>(saved.Extra) { [ConfigMarker] = true, [Int8Quantization.QatSchemeConfigKey] = Int8Quantization.Name(scheme) } }).Save(configPath);

        if (options.ExportOnnx)
        {
            string onnx = Path.Combine(options.Out, QatOptions.OnnxFileName);
            OnnxExportJob.Run(options.Out, onnx, new OnnxExportOptions { Int8 = true, Opset = options.Opset, Int8Scheme = scheme }, check: false);
            metrics["onnx"] = QatOptions.OnnxFileName;
            metrics["onnx_bytes"] = new FileInfo(onnx).Length;
        }
        metrics["mode"] = "qat";
        metrics["version"] = RunFiles.Version;
        metrics["int8_weights"] = Int8Quantization.Name(scheme);
        metrics["quantized_layers"] = quantized;
        if (!resume) metrics["before"] = before;
        RunFiles.Write(options.Out, "metrics.json", metrics);
        return metrics;
    }
}

/// <summary>
/// QAT's loss with a teacher: the fake-quantized student learns the fp32 teacher's outputs (α·soft targets + (1 − α)·
/// labels, <see cref="Losses.TaskHeadDistillation(Teacher, BertTaskModel, TaskBatch, double, double)"/>), as vanilla KD does for a smaller student.
/// </summary>
sealed class TeacherGuidedObjective(Teacher teacher, BertTaskModel student, KdOptions options) : ITrainingObjective<TaskBatch>
{
    public nn.Module Module => student;

    public (Tensor Loss, long Tokens) Loss(TaskBatch batch) => Losses.TaskHeadDistillation(teacher, student, batch, options.Alpha, options.Temperature);
}
