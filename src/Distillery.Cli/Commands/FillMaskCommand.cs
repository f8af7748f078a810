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
        var untrained = UntrainedHeadOption();
        var command = new Command("fill-mask", "Predict the tokens hidden behind [MASK] with a masked-LM model. A model whose head was never trained " +
            "(a MiniLM-distilled student: its config.json says distillery_mlm_head_untrained) is refused unless --allow-untrained-head.") { dir, text, topK, untrained };
        command.SetAction(parse =>
        {
            using var predictor = BertPredictor.Load(parse.GetValue(dir)!, BertTask.MaskedLM);
            foreach (var warning in predictor.LoadReport.Warnings()) context.Warn(warning);
            WarnUntrainedHead(context, predictor, parse.GetValue(untrained));
            var predictions = predictor.FillMask(parse.GetValue(text)!, parse.GetValue(topK), parse.GetValue(untrained));
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

    /// <summary><c>--allow-untrained-head</c>, shared with <c>predict</c>.</summary>
    internal static Option<bool> UntrainedHeadOption() => new("--allow-untrained-head")
    {
        Description = "Fill masks even when the model's config says its masked-LM head was never trained (the candidates are then noise; a warning says so).",
    };

    /// <summary>With --allow-untrained-head on such a model: one warning line saying what the candidates are worth.</summary>
    internal static void WarnUntrainedHead(CliContext context, BertPredictor predictor, bool allowed)
    {
        if (allowed && predictor.Model.Task == BertTask.MaskedLM && predictor.Model.Config.MlmHeadUntrained is string why)
            context.Warn($"the masked-LM head was never trained ({why}): these candidates are noise");
    }
}
