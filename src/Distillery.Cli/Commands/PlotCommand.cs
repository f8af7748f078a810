using System.CommandLine;
using Distillery.Bench;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary><c>distillery plot</c>: draws a results figure described as JSON (see <see cref="Figure"/>) to a PNG.</summary>
public static class PlotCommand
{
    public static Command Create(CliContext context)
    {
        var spec = new Argument<string>("figure") { Description = "Figure JSON: title, x_label, y_label, series [{label, lines, points [{x, y, y_error, label}]}], legend." };
        var output = new Option<string>("--out", "-o") { Description = "The PNG to write (replaced if it exists; never the figure file).", Required = true };
        var width = new Option<int>("--width") { Description = "Width in pixels.", DefaultValueFactory = _ => 900 };
        var height = new Option<int>("--height") { Description = "Height in pixels.", DefaultValueFactory = _ => 560 };
        var command = new Command("plot",
            "Draw a results figure (points with error bars, or curves) from a JSON description to a PNG. The results-table " +
            "generators (bench/*-table.py) write these descriptions from the run records, so every plot regenerates from data.\n\n" +
            "Example: distillery plot docs/records/claims-task/figures/sst2-score-latency.json --out docs/claims-sst2.png")
        { spec, output, width, height };
        command.SetAction(parse =>
        {
            string path = parse.GetValue(spec)!, png = parse.GetValue(output)!;
            if (!png.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) throw new ArgumentException($"--out {png}: the plot is a PNG; name the file *.png");
            RunOutput.CheckNotInput(png, [path]);
            var figure = Figure.Read(path);
            figure.SavePng(png, parse.GetValue(width), parse.GetValue(height));
            context.Console.WriteLine($"wrote {png} ({figure.Series.Count} series, {figure.Series.Sum(s => s.Points.Count)} points)");
            return 0;
        });
        return command;
    }
}
