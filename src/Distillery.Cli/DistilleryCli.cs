using System.CommandLine;
using System.CommandLine.Help;
using Distillery.Cli.Commands;
using Spectre.Console;

namespace Distillery.Cli;

/// <summary>
/// The <c>distillery</c> command line. It stays thin: each command parses its options into the library's records and
/// calls one library entry point; no tensors here. Errors from bad input are one line on stderr and exit code 1.
/// </summary>
public static class DistilleryCli
{
    /// <summary>Builds the command tree; <paramref name="console"/> receives tables and progress.</summary>
    public static Command Build(IAnsiConsole console, TextWriter error)
    {
        // A plain Command named "distillery" rather than RootCommand, whose name is the assembly's (Distillery.Cli):
        // the usage line then shows the command users type (the ./distillery script runs this program).
        var root = new Command("distillery", "Distillery: make BERT encoders small and fast (distillation, pruning, quantization).")
        {
            new HelpOption(),
            new VersionOption(),
        };
        var context = new CliContext(console, error);
        root.Subcommands.Add(QuickstartCommand.Create(context));
        root.Subcommands.Add(InitCommand.Create(context));
        root.Subcommands.Add(PretrainCommand.Create(context));
        root.Subcommands.Add(FinetuneCommand.CreateFinetune(context));
        root.Subcommands.Add(FinetuneCommand.CreateEval(context));
        root.Subcommands.Add(DistillCommand.Create(context));
        root.Subcommands.Add(BenchCommand.Create(context));
        root.Subcommands.Add(RunCommand.Create(context));
        root.Subcommands.Add(PruneCommand.Create(context));
        root.Subcommands.Add(QuantizeCommand.Create(context));
        root.Subcommands.Add(InspectCommand.Create(context));
        root.Subcommands.Add(PlotCommand.Create(context));
        root.Subcommands.Add(ConvertCommand.Create(context));
        root.Subcommands.Add(ReduceCommand.Create(context));
        root.Subcommands.Add(ExtractCommand.Create(context));
        root.Subcommands.Add(FillMaskCommand.Create(context));
        root.Subcommands.Add(PredictCommand.Create(context));
        root.Subcommands.Add(ExportCommand.Create(context));
        root.Subcommands.Add(ImportCommand.Create(context));
        return root;
    }

    /// <summary>Runs the command line; returns the process exit code.</summary>
    public static int Run(string[] args, IAnsiConsole? console = null, TextWriter? output = null, TextWriter? error = null)
    {
        console ??= AnsiConsole.Console;
        // Redirected output (logs, CI) has no terminal width; Spectre would wrap at 80 columns mid-value.
        if (Console.IsOutputRedirected) console.Profile.Width = Math.Max(console.Profile.Width, 160);
        error ??= Console.Error;
        var root = Build(console, error);
        var invocation = new InvocationConfiguration { Output = output ?? Console.Out, Error = error, EnableDefaultExceptionHandler = false };
        try
        {
            var parse = root.Parse(args);
            // A bad option value is one line naming the option, the value and what it accepts (System.CommandLine's own
            // report is the whole help text, and names types as System.Nullable`1[System.Double]). Help and version
            // requests, and a missing command, keep their usual output.
            if (parse.Errors.Count > 0 && parse.Action is System.CommandLine.Invocation.ParseErrorAction && ParseErrors.Describe(parse) is string message)
            {
                error.WriteLine($"error: {message}");
                return 1;
            }
            return parse.Invoke(invocation);
        }
        catch (Exception e) when (CliContext.IsUserError(e))
        {
            error.WriteLine($"error: {CliContext.OneLine(e)}");
            return 1;
        }
    }
}

/// <summary>What every command needs: where to write.</summary>
public sealed record CliContext(IAnsiConsole Console, TextWriter Error)
{
    /// <summary>Errors caused by the user's input or files (reported as one line), as opposed to bugs (stack traces).</summary>
    public static bool IsUserError(Exception e) => e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException
        or FormatException or ArgumentException or InvalidOperationException or IOException or UnauthorizedAccessException
        or System.Text.Json.JsonException;

    /// <summary>
    /// The first line of an exception's message, without the " (Parameter 'options')" that .NET appends to an
    /// <see cref="ArgumentException"/> (a library parameter name tells a command-line user nothing).
    /// </summary>
    public static string OneLine(Exception e)
    {
        string line = e.Message.Split('\n')[0].TrimEnd();
        string suffix = e is ArgumentException { ParamName: string name } ? $" (Parameter '{name}')" : "";
        return suffix.Length > 0 && line.EndsWith(suffix, StringComparison.Ordinal) ? line[..^suffix.Length] : line;
    }

    /// <summary>Writes a warning line to stderr.</summary>
    public void Warn(string message) => Error.WriteLine($"warning: {message}");

    /// <summary>After a model folder is written: one warning line when transformers cannot load it (pruned shapes it cannot represent).</summary>
    public void WarnIfDistilleryOnly(string folder)
    {
        string config = Path.Combine(folder, Models.BertCheckpoint.ConfigFile);
        if (File.Exists(config) && Models.BertConfig.Load(config).TransformersIncompatibility() is string reason) Warn($"{folder}: {reason}");
    }
}
