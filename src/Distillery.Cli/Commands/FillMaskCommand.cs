using System.CommandLine;
using Distillery.Inference;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery fill-mask</c>: the top tokens for each [MASK] in a text.</summary>
public static class FillMaskCommand
{
    public static Command Create(CliContext context)
    {
        var dir = new Argument<string>("model") { Description = "Masked-LM model folder." };
        var text = new Argument<string>("text") { Description = "Text with one or more [MASK] tokens." };
        var topK = new Option<int>("--top-k", "-k") { Description = "Candidates per mask.", DefaultValueFactory = _ => 5 };
        var command = new Command("fill-mask", "Predict the tokens hidden behind [MASK] with a masked-LM model.") { dir, text, topK };
        command.SetAction(parse =>
        {
            using var predictor = BertPredictor.Load(parse.GetValue(dir)!, BertTask.MaskedLM);
            foreach (var warning in predictor.LoadReport.Warnings()) context.Warn(warning);
            var predictions = predictor.FillMask(parse.GetValue(text)!, parse.GetValue(topK));
            if (predictor.LastInputTruncated) context.Warn($"input truncated to {predictor.MaxLength} tokens");
            foreach (var prediction in predictions)
            {
                var table = new Table().Title($"[[MASK]] at token {prediction.Position}").AddColumn("token").AddColumn("id").AddColumn(new TableColumn("probability").RightAligned());
                foreach (var c in prediction.Candidates) table.AddRow(Markup.Escape(c.Token), c.TokenId.ToString(), $"{c.Probability:0.0000}");
                context.Console.Write(table);
            }
            return 0;
        });
        return command;
    }
}
