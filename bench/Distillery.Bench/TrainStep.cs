// `train-step`: one fine-tuning step of a model (default the real L6-H384 teacher) at batch 32 x 128, through
// Distillery's Trainer and through a bare TorchSharp loop over the same model code, in one process, so the trainer's
// overhead (bookkeeping, logging, per-step seeding, the data source) is measured against the least a step can cost here.
// Both run fp32 matmuls, the same AdamW (Distillery's fused one, decay / no-decay groups as the Trainer), the same gradient clipping, on
// random ids with no padding. Each reports ms/step, tokens/s and MFU against libtorch's GEMM peak measured first.
// Then where the step's time goes: the bare loop's phases, the bare loop without dropout, and the step's GEMMs alone
// (the same products through autograd, nothing between them): the MFU ceiling of this model code on this machine.
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

        // The bare loop: forward, loss, backward, clipping, AdamW, nothing else; then the same without dropout (eval
        // mode, gradients still computed), which shows what dropout's masks cost.
        var (bareMs, phases) = BareLoop(modelDir, examples, batch, length, steps, warmup, dropout: true);
        var (noDropoutMs, _) = BareLoop(modelDir, examples, batch, length, steps, warmup, dropout: false);
        double gemmMs = GemmSkeletonMs(config, batch, length, steps, warmup);

        Console.WriteLine("| loop | ms/step | tokens/s | model GFLOP/s | MFU |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (name, ms) in new[] { ("bare TorchSharp", bareMs), ("Distillery Trainer", trainerMs), ("bare, no dropout", noDropoutMs), ("GEMMs alone (skeleton)", gemmMs) })
        {
            double tokens = batch * length / (ms / 1000);
            double gflops = flopsPerToken * tokens / 1e9;
            Console.WriteLine($"| {name} | {ms:0.0} | {tokens:N0} | {gflops:0.0} | {gflops / peak.PeakGFlops:P1} |");
        }
        Console.WriteLine();
        Console.WriteLine($"trainer overhead: {100 * (trainerMs / bareMs - 1):0.0}% (training FLOPs per token {flopsPerToken:G4}, 3x forward)");
        Console.WriteLine($"bare loop phases (ms/step): forward+loss {phases.Forward:0.0}, backward {phases.Backward:0.0}, clip {phases.Clip:0.0}, AdamW+zero_grad {phases.Optimizer:0.0}");
        Console.WriteLine($"dropout costs {bareMs - noDropoutMs:0.0} ms/step ({(bareMs - noDropoutMs) / bareMs:P1}); the step's GEMMs alone take {gemmMs:0.0} ms ({gemmMs / bareMs:P1} of the bare step): " +
            $"the rest, {bareMs - gemmMs:0.0} ms, is elementwise, normalisation, softmax, dropout, embedding and optimizer work");
        return 0;
    }

    /// <summary>Mean ms/step of the bare loop, and its phases (forward+loss, backward, clipping, optimizer).</summary>
    static (double Ms, (double Forward, double Backward, double Clip, double Optimizer) Phases) BareLoop(
        string modelDir, List<EncodedExample> examples, int batch, int length, int steps, int warmup, bool dropout)
    {
        double bareMs;
        double forward = 0, backward = 0, clip = 0, optimizerMs = 0;
        using (var model = Load(modelDir))
        {
            model.SetPrecision(ComputePrecision.Float32);
            if (dropout) model.train(); else model.eval();
            var named = model.named_parameters().ToList();
            // The Trainer's exclusion list (biases and LayerNorm are not decayed).
            static bool NoDecay(string name) => name.EndsWith(".bias", StringComparison.Ordinal) || name.Contains("LayerNorm", StringComparison.Ordinal) || name == "bias";
            // The Trainer's optimizer (Distillery's fused AdamW), so the two loops differ only in the Trainer's own work.
            using var optimizer = new Distillery.Training.AdamW(new[]
            {
                new TorchSharp.Modules.AdamW.ParamGroup(named.Where(p => !NoDecay(p.name)).Select(p => p.parameter), lr: 5e-5, weight_decay: 0.01),
                new TorchSharp.Modules.AdamW.ParamGroup(named.Where(p => NoDecay(p.name)).Select(p => p.parameter), lr: 5e-5, weight_decay: 0.0),
            });
            var parameters = named.Select(p => p.parameter).ToList();
            var watch = new Stopwatch();
            var phase = new Stopwatch();
            for (int step = 0; step < warmup + steps; step++)
            {
                if (step == warmup) { watch.Restart(); forward = backward = clip = optimizerMs = 0; }
                using var scope = NewDisposeScope();
                phase.Restart();
                var rows = examples.Skip(step * batch).Take(batch).ToList();
                var ids = tensor(rows.SelectMany(e => e.InputIds.Select(i => (long)i)).ToArray(), [batch, length]);
                var labels = tensor(rows.Select(e => (long)e.Label).ToArray());
                var loss = nn.functional.cross_entropy(model.forward(new BertInputs(ids, ones_like(ids), zeros_like(ids))).Logits, labels);
                _ = loss.item<float>();
                forward += phase.Elapsed.TotalMilliseconds; phase.Restart();
                loss.backward();
                backward += phase.Elapsed.TotalMilliseconds; phase.Restart();
                nn.utils.clip_grad_norm_(parameters, 1.0);
                clip += phase.Elapsed.TotalMilliseconds; phase.Restart();
                optimizer.step();
                optimizer.zero_grad();
                optimizerMs += phase.Elapsed.TotalMilliseconds;
            }
            bareMs = watch.Elapsed.TotalMilliseconds / steps;
        }
        return (bareMs, (forward / steps, backward / steps, clip / steps, optimizerMs / steps));
    }

    /// <summary>
    /// The step's matrix products and nothing else, through autograd as in the model: per layer the Q, K, V, attention
    /// output, FFN-in and FFN-out linears on [B·T, ·] (forward, then dX and dW in backward) and the attention products
    /// QKᵀ [B·h, T, d]·[B·h, d, T] and P·V, chained without nonlinearities, summed, backward; the classifier is left out
    /// (negligible). Mean ms/step over the timed steps.
    /// </summary>
    static double GemmSkeletonMs(BertConfig config, int batch, int length, int steps, int warmup)
    {
        int h = config.NumAttentionHeads, d = config.HeadSize, hidden = config.HiddenSize, inner = config.IntermediateSize;
        long rows = (long)batch * length;
        Tensor W(long o, long i) => (randn(o, i) * 0.02).requires_grad_(true);
        var layers = Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new[]
        {
            W(h * d, hidden), W(h * d, hidden), W(h * d, hidden), W(hidden, h * d), W(inner, hidden), W(hidden, inner),
        }).ToList();
        var x = randn(rows, hidden);
        var watch = new Stopwatch();
        for (int step = 0; step < warmup + steps; step++)
        {
            if (step == warmup) watch.Restart();
            using var scope = NewDisposeScope();
            var hiddenState = x;
            foreach (var w in layers)
            {
                Tensor Heads(Tensor t) => t.view(batch, length, h, d).transpose(1, 2);                  // [B, h, T, d]
                var q = Heads(nn.functional.linear(hiddenState, w[0]));
                var k = Heads(nn.functional.linear(hiddenState, w[1]));
                var v = Heads(nn.functional.linear(hiddenState, w[2]));
                var scores = matmul(q, k.transpose(-1, -2));                                           // [B, h, T, T]
                var context = matmul(scores, v).transpose(1, 2).reshape(rows, h * d);                  // [B·T, h·d]
                var attended = nn.functional.linear(context, w[3]);                                    // [B·T, H]
                hiddenState = nn.functional.linear(nn.functional.linear(attended, w[4]), w[5]);        // [B·T, H]
            }
            hiddenState.sum().backward();
            foreach (var w in layers.SelectMany(l => l)) w.grad?.zero_();
        }
        double ms = watch.Elapsed.TotalMilliseconds / steps;
        foreach (var w in layers.SelectMany(l => l)) w.Dispose();
        x.Dispose();
        return ms;
    }

    static BertTaskModel Load(string dir)
    {
        manual_seed(0);
        var (model, _) = BertCheckpoint.Load(dir, BertTask.SequenceClassification);   // the classifier starts random
        return model;
    }
}
