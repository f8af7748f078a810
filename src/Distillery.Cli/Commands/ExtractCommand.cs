using System.CommandLine;
using Distillery.Distillation;
using Distillery.Models;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery extract</c>: a shallower model of chosen layers of another, no training (<see cref="LayerExtraction"/>).</summary>
public static class ExtractCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Option<string>("--model", "-m") { Description = "Source model folder (any head; a sentence-transformers folder keeps its pooling and Dense modules).", Required = true };
        var layers = new Option<string>("--layers") { Description = "0-based source layers to keep, in order, e.g. 0,2,4 (DistilBERT's every other layer).", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Output model folder.", Required = true };
        var overwrite = TrainingCliOptions.OverwriteOption();
        var command = new Command("extract",
            "Make a shallower model of chosen layers of another, without training: its embeddings, the named encoder layers " +
            "in order, and its head, copied as they are (the student DistilBERT starts from). The baseline that shows what a " +
            "distillation adds over the teacher's own layers, or a student for any method (--student).\n" +
            "Example: distillery extract --model runs/teacher-mlm --layers 0,2,4 --out runs/l3")
        {
            model, layers, output, overwrite,
        };
        command.SetAction(parse =>
        {
            var options = new ExtractOptions
            {
                Model = parse.GetValue(model)!, Layers = LayerExtraction.ParseLayers(parse.GetValue(layers)!, "--layers"), Out = parse.GetValue(output)!,
            };
            var config = LayerExtraction.Run(options, parse.GetValue(overwrite));
            context.Console.MarkupLineInterpolated($"Wrote [bold]{options.Out}[/]: {BertArch.NameOf(config)}, layers {string.Join(",", options.Layers)} of {options.Model}.");
            return 0;
        });
        return command;
    }
}
