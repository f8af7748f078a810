// `train-step`: one fine-tuning step of a model (default the real L6-H384 teacher) at batch 32 x 128, through
// Distillery's Trainer and through a bare TorchSharp loop over the same model code, in one process, so the trainer's
// overhead (bookkeeping, logging, per-step seeding, the data source) is measured against the least a step can cost here.
// Both run fp32 matmuls, the same AdamW (decay / no-decay groups as the Trainer), the same gradient clipping, on
// random ids with no padding. Each reports ms/step, tokens/s and MFU against libtorch's GEMM peak measured first.
using Distillery.Runtime;
using System.Diagnostics;
using Distillery.Bench;
using Distillery.Models;
using Distillery.Training;
using TorchSharp;
using static TorchSharp.torch;

static class TrainStep
{
    public static int Run(Func<string, string, string> arg)
    {
        string modelDir = arg("--model", "models/minilm-l6-h384");
        int batch = int.Parse(arg("--batch", "32")), length = int.Parse(arg("--length", "128"));
        int steps = int.Parse(arg("--steps", "10")), warmup = int.Parse(arg("--warmup", "2"));
        var peak = GemmPeaks.TorchOncePerProcess();
        Console.WriteLine($"# train step: {modelDir}, sequence classification, batch {batch} x {length}, fp32, {steps} timed steps after {warmup} warm-up");
        Console.WriteLine($"# commit {Machine.GitCommit() ?? "unknown"}, {Machine.Describe()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        Console.WriteLine($"# {peak}");
        Console.WriteLine();

        var config = BertCheckpoint.ReadConfig(modelDir) with { Labels = ["0", "1"], Architectures = ["BertForSequenceClassification"] };
        double flopsPerToken = ForwardCost.TrainingFlopsPerToken(config, BertTask.SequenceClassification, length);
        var random = new Random(0);
        var examples = Enumerable.Range(0, batch * (steps + warmup)).Select(_ =>
            new EncodedExample(Enumerable.Range(0, length).Select(_ => random.Next(1000, config.VocabSize)).ToArray(), new int[length], random.Next(2), 0)).ToList();

        // Distillery's Trainer: timed from the end of the warm-up steps to the end of the run (OnProgress after each step).
        double trainerMs;
        using (var model = Load(modelDir))
        {
            var options = new TrainerOptions
            {
                BatchSize = batch, MaxSteps = warmup + steps, Precision = ComputePrecision.Float32, LogEvery = 1, CheckpointEvery = 0, WarmupSteps = 0,
            };
            string runDir = Directory.CreateTempSubdirectory("distillery-train-step-").FullName;
            try
            {
                var watch = new Stopwatch();
                var trainer = new Trainer<TaskBatch>(new TaskObjective(model), new TaskBatchSource(examples, batch, seed: 0, padId: 0, shuffle: false, bucket: false), options, runDir)
                {
                    OnProgress = p => { if (p.Step == warmup) watch.Restart(); },
                };
                trainer.Run();
                trainerMs = watch.Elapsed.TotalMilliseconds / steps;
            }
            finally { Directory.Delete(runDir, recursive: true); }
        }

        // The bare loop: forward, loss, backward, clipping, AdamW, nothing else.
        double bareMs;
        using (var model = Load(modelDir))
        {
            model.SetPrecision(ComputePrecision.Float32);
            model.train();
            var named = model.named_parameters().ToList();
            // The Trainer's exclusion list (biases and LayerNorm are not decayed).
            static bool NoDecay(string name) => name.EndsWith(".bias", StringComparison.Ordinal) || name.Contains("LayerNorm", StringComparison.Ordinal) || name == "bias";
            using var optimizer = optim.AdamW(new[]
            {
                new TorchSharp.Modules.AdamW.ParamGroup(named.Where(p => !NoDecay(p.name)).Select(p => p.parameter), lr: 5e-5, weight_decay: 0.01),
                new TorchSharp.Modules.AdamW.ParamGroup(named.Where(p => NoDecay(p.name)).Select(p => p.parameter), lr: 5e-5, weight_decay: 0.0),
            }, lr: 5e-5);
            var parameters = named.Select(p => p.parameter).ToList();
            var watch = new Stopwatch();
            for (int step = 0; step < warmup + steps; step++)
            {
                if (step == warmup) watch.Restart();
                using var scope = NewDisposeScope();
                var rows = examples.Skip(step * batch).Take(batch).ToList();
                var ids = tensor(rows.SelectMany(e => e.InputIds.Select(i => (long)i)).ToArray(), [batch, length]);
                var labels = tensor(rows.Select(e => (long)e.Label).ToArray());
                var loss = nn.functional.cross_entropy(model.forward(new BertInputs(ids, ones_like(ids), zeros_like(ids))).Logits, labels);
                _ = loss.item<float>();
                loss.backward();
                nn.utils.clip_grad_norm_(parameters, 1.0);
                optimizer.step();
                optimizer.zero_grad();
            }
            bareMs = watch.Elapsed.TotalMilliseconds / steps;
        }

        Console.WriteLine("| loop | ms/step | tokens/s | model GFLOP/s | MFU |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (name, ms) in new[] { ("bare TorchSharp", bareMs), ("Distillery Trainer", trainerMs) })
        {
            double tokens = batch * length / (ms / 1000);
            double gflops = flopsPerToken * tokens / 1e9;
            Console.WriteLine($"| {name} | {ms:0.0} | {tokens:N0} | {gflops:0.0} | {gflops / peak.PeakGFlops:P1} |");
        }
        Console.WriteLine();
        Console.WriteLine($"trainer overhead: {100 * (trainerMs / bareMs - 1):0.0}% (training FLOPs per token {flopsPerToken:G4}, 3x forward)");
        return 0;
    }

    static BertTaskModel Load(string dir)
    {
        manual_seed(0);
        var (model, _) = BertCheckpoint.Load(dir, BertTask.SequenceClassification);   // the classifier starts random
        return model;
    }
}
