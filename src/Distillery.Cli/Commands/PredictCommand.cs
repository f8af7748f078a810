using System.CommandLine;
using Distillery.Inference;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery predict</c>: run a model's head on text.</summary>
public static class PredictCommand
{
    public static Command Create(CliContext context)
    {
        var dir = new Argument<string>("model") { Description = "Model folder; its config names the head." };
        var text = new Option<string>("--text", "-t") { Description = "Input text (the question, for QA models).", Required = true };
        var pair = new Option<string?>("--text-pair") { Description = "Second text of a pair (the context, for QA models; for sentence embeddings, the text to compare with)." };
        var topK = new Option<int>("--top-k", "-k") { Description = "Candidates per [MASK] for masked-LM models.", DefaultValueFactory = _ => 5 };
        var untrained = FillMaskCommand.UntrainedHeadOption();
        var command = new Command("predict", "Run a model's head on text: label probabilities (classification), a score (regression), the answer span (QA), [MASK] fillers (MLM) or the sentence vector (a sentence-transformers folder; with --text-pair, the two texts' cosine similarity).")
        {
            dir, text, pair, topK, untrained,
        };
        command.SetAction(parse =>
        {
            using var predictor = BertPredictor.Load(parse.GetValue(dir)!);
            foreach (var warning in predictor.LoadReport.Warnings()) context.Warn(warning);
            FillMaskCommand.WarnUntrainedHead(context, predictor, parse.GetValue(untrained));
            string a = parse.GetValue(text)!;
            string? b = parse.GetValue(pair);
            var console = context.Console;
            switch (predictor.Model.Task)
            {
                case BertTask.SequenceClassification:
                    var result = predictor.Classify(a, b);
                    if (result.Score is double score) console.MarkupLineInterpolated($"score: [bold]{score:0.0000}[/]");
                    else
                    {
                        var table = new Table().AddColumn("label").AddColumn(new TableColumn("probability").RightAligned());
                        foreach (var (label, p) in result.Probabilities) table.AddRow(Markup.Escape(label), $"{p:0.0000}");
                        console.Write(table);
                    }
                    break;
                case BertTask.QuestionAnswering:
                    if (b == null) throw new ArgumentException("a QA model needs the context in --text-pair (the question goes in --text)");
                    var span = predictor.Answer(a, b);
                    console.MarkupLineInterpolated($"answer: [bold]{span.Answer}[/] (characters {span.Start}..{span.End}, score {span.Score:0.00})");
                    break;
                case BertTask.SentenceEmbedding:
                    using (var encoder = Inference.SentenceEncoder.Load(parse.GetValue(dir)!))
                    {
                        var vector = encoder.Encode(a);
                        console.MarkupLineInterpolated($"embedding ({vector.Length} dimensions): [[{string.Join(", ", vector.Take(6).Select(x => x.ToString("0.0000")))}, ...]]");
                        if (b != null) console.MarkupLineInterpolated($"cosine similarity with --text-pair: [bold]{Inference.SentenceEncoder.Similarity(vector, encoder.Encode(b)):0.0000}[/]");
                    }
                    break;
                default:
                    foreach (var prediction in predictor.FillMask(a, parse.GetValue(topK), parse.GetValue(untrained)))
                        console.MarkupLineInterpolated($"[[MASK]] at token {prediction.Position}: {string.Join(", ", prediction.Candidates.Select(c => $"{c.Token} ({c.Probability:0.000})"))}");
                    break;
            }
            if (predictor.LastInputTruncated) context.Warn($"input truncated to {predictor.MaxLength} tokens");
            return 0;
        });
        return command;
    }
}
