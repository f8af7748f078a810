using System.CommandLine;
using Distillery.Recipes;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery run recipe.json</c>: a chain of stages (init → pretrain → distill → finetune …).</summary>
public static class RunCommand
{
    public static Command Create(CliContext context)
    {
        var recipe = new Argument<string>("recipe") { Description = "Recipe JSON: {\"name\", \"stages\": [{\"stage\": \"init|pretrain|finetune|distill|prune|reduce|export\", ...options}]}." };
        var check = new Option<bool>("--check") { Description = "Validate the recipe and print its stages without running them." };
        var force = new Option<bool>("--force") { Description = "Re-run stages whose output folder is already complete (default: skip them)." };
        var command = new Command("run", "Run a recipe: stages in order, each stage's output the next one's input; the whole recipe is checked first.") { recipe, check, force };
        command.SetAction(parse =>
        {
            var loaded = Recipe.Load(parse.GetValue(recipe)!);
            var table = new Table().Title(Markup.Escape($"recipe {loaded.Name}")).AddColumn("#").AddColumn("stage").AddColumn("output");
            foreach (var s in loaded.Stages) table.AddRow(s.Index.ToString(), s.Kind.ToString().ToLowerInvariant(), Markup.Escape(s.Out));
            context.Console.Write(table);
            if (parse.GetValue(check)) return 0;
            var results = RunProgress.Show(context, events => loaded.Run(events,
                (stage, done) => events.Message?.Invoke(done ? $"{stage.Label}: {stage.Out} is complete, skipping" : $"{stage.Label} → {stage.Out}"), parse.GetValue(force)));
            foreach (var (stage, metrics) in loaded.Stages.Zip(results))
                if (metrics != null) context.Console.MarkupLineInterpolated($"{stage.Label}: {Summary(metrics)}");
            return 0;
        });
        return command;
    }

    /// <summary>A stage's result in one line: its dev or held-out scores, what a reduce kept, what an export wrote.</summary>
    static string Summary(System.Text.Json.Nodes.JsonObject metrics) => metrics["command"]?.ToString() switch
    {
        "reduce" => Models.EmbeddingReduction.Describe(metrics),
        "export" => $"{metrics["path"]} ({InspectCommand.Bytes(metrics["bytes"]!.GetValue<long>())}{(metrics["int8"]!.GetValue<bool>() ? ", int8" : "")})",
        _ => (metrics["dev"] ?? metrics["eval"])?.ToJsonString() ?? "",
    };
}
