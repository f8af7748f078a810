using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;

namespace Distillery.Cli;

/// <summary>
/// Turns System.CommandLine's parse errors into one line: the option, the value given, and what it accepts
/// (<c>--lr: "abc" is not a number</c>; <c>--precision: "fp8" is not one of auto, fp32, bf16</c>).
/// </summary>
public static partial class ParseErrors
{
    /// <summary>The first error of <paramref name="parse"/> as one line, or null to leave it to System.CommandLine
    /// (a missing command, where the help text is the useful answer).</summary>
    public static string? Describe(ParseResult parse)
    {
        var error = parse.Errors[0];
        if (parse.CommandResult.Command.Subcommands.Count > 0 && error.Message.StartsWith("Required command", StringComparison.Ordinal)) return null;
        string option = error.SymbolResult switch
        {
            OptionResult o => o.Option.Name,
            ArgumentResult { Parent: OptionResult o } => o.Option.Name,
            ArgumentResult a => a.Argument.Name,
            _ => "",
        };
        string command = parse.CommandResult.Command.Name;
        string message = error.Message;
        var cannotParse = CannotParse().Match(message);
        if (cannotParse.Success)
        {
            string name = option.Length > 0 ? option : cannotParse.Groups["option"].Value;
            return $"{name}: \"{cannotParse.Groups["value"].Value}\" is not {Describe(cannotParse.Groups["type"].Value)} (see distillery {command} --help)";
        }
        var notRecognized = NotRecognized().Match(message);
        if (notRecognized.Success && option.Length > 0)
        {
            var valid = Quoted().Matches(message[notRecognized.Length..]).Select(m => m.Groups[1].Value);
            return $"{option}: \"{notRecognized.Groups["value"].Value}\" is not one of {string.Join(", ", valid)}";
        }
        // Anything else (unknown option, missing value, a required option left out): its first line, and where to look.
        string line = string.Join(" ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        if (parse.Errors.Count > 1) line += $" (and {parse.Errors.Count - 1} more)";
        return $"{line} (see distillery {command} --help)";
    }

    /// <summary>A .NET type name as a user reads it.</summary>
    static string Describe(string type)
    {
        var inner = Regex.Match(type, @"System\.Nullable`1\[(.+)\]");
        if (inner.Success) type = inner.Groups[1].Value;
        return type switch
        {
            "System.Double" or "System.Single" or "System.Decimal" => "a number",
            "System.Int32" or "System.Int64" or "System.Int16" => "a whole number",
            "System.Boolean" => "true or false",
            _ when type.StartsWith("Distillery.", StringComparison.Ordinal) => $"a {type[(type.LastIndexOf('.') + 1)..]} name",
            _ => $"a valid {type[(type.LastIndexOf('.') + 1)..]}",
        };
    }

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|command|argument) '(?<option>[^']*)' as expected type '(?<type>[^']+)'")]
    private static partial Regex CannotParse();

    [GeneratedRegex(@"^Argument '(?<value>.*)' not recognized\. Must be one of:")]
    private static partial Regex NotRecognized();

    [GeneratedRegex(@"'([^']*)'")]
    private static partial Regex Quoted();
}
