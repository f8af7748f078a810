using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Xml.Linq;
using Distillery.Distillation;
using Distillery.Training;

namespace Distillery.Cli.Commands;

/// <summary>
/// The flags of every registered method, generated from its options record: one flag per scalar property
/// (<c>AlphaMlm</c> is <c>--alpha-mlm</c>, or its <see cref="CliNameAttribute"/>), described by the property's XML doc
/// and default. Methods that share a flag name share the flag; a flag the chosen method does not have is an error.
/// </summary>
public sealed class MethodFlags
{
    sealed record Target(DistillMethod Method, PropertyInfo Property);

    readonly Dictionary<string, (Option<string?> Option, List<Target> Targets)> flags = new(StringComparer.Ordinal);

    /// <summary>Generates the flags of <paramref name="methods"/>.</summary>
    public MethodFlags(IReadOnlyList<DistillMethod> methods)
    {
        var docs = XmlDocs.Load(typeof(DistillMethod).Assembly);
        var help = new Dictionary<string, List<string>>();
        foreach (var method in methods)
        {
            var defaults = method.DefaultOptions();
            foreach (var property in method.OptionsType.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                bool scalar = type.IsEnum || type == typeof(string) || type == typeof(int) || type == typeof(long) || type == typeof(double)
                    || type == typeof(bool);
                if (!scalar || property.SetMethod == null || property.GetCustomAttribute<JsonIgnoreAttribute>() != null) continue;
                string name = "--" + (property.GetCustomAttribute<CliNameAttribute>()?.Name ?? CliEnums.Kebab(property.Name));
                if (!flags.TryGetValue(name, out var flag))
                {
                    flag = (new Option<string?>(name), []);
                    flags[name] = flag;
                    help[name] = [];
                }
                flag.Targets.Add(new Target(method, property));
                var value = property.GetValue(defaults);
                string shown = value is null ? "none" : type.IsEnum ? CliEnums.Name(value) : Convert.ToString(value, CultureInfo.InvariantCulture)!;
                string values = type.IsEnum ? $"; one of {string.Join(", ", CliEnums.Names(type).Select(n => n.Name))}" : "";
                help[name].Add($"{method.Name}: {docs.Summary(property).TrimEnd('.')} (default {shown}{values}).");
            }
        }
        foreach (var (name, flag) in flags)
        {
            flag.Option.Description = string.Join(" ", help[name]);
            // A switch (every method's property behind it is a bool): --one-shot alone means true; --one-shot false still reads.
            if (flag.Targets.All(t => IsBool(t.Property))) flag.Option.Arity = ArgumentArity.ZeroOrOne;
        }
    }

    static bool IsBool(PropertyInfo property) => (Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType) == typeof(bool);

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var (option, _) in flags.Values) command.Options.Add(option);
    }

    /// <summary>The flags given that belong to no method but <paramref name="method"/>'s options.</summary>
    public IDistillMethodOptions Apply(ParseResult parse, DistillMethod method, IDistillMethodOptions basis)
    {
        var json = JsonSerializer.SerializeToNode(basis, method.OptionsType, RunFiles.Json)!.AsObject();
        foreach (var (name, (option, targets)) in flags)
        {
            string? raw = parse.GetValue(option);
            if (raw is null && parse.GetResult(option) is System.CommandLine.Parsing.OptionResult { Implicit: false } && targets.All(t => IsBool(t.Property))) raw = "true";   // a bare switch
            if (raw is null) continue;
            string owners = string.Join(" and ", targets.Select(t => t.Method.Name));
            var target = targets.FirstOrDefault(t => t.Method == method)
                ?? throw new ArgumentException($"{name} is not an option of {method.Name} (it is {owners}'s)");
            var property = target.Property;
            string key = property.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? RunFiles.Json.PropertyNamingPolicy!.ConvertName(property.Name);
            json[key] = Value(property.PropertyType, raw, name);
        }
        return (IDistillMethodOptions)json.Deserialize(method.OptionsType, RunFiles.Json)!;
    }

    /// <summary>A flag's text as the JSON value of a property of <paramref name="type"/>; a value that does not parse is one line.</summary>
    static JsonNode? Value(Type type, string raw, string flag)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        var invariant = CultureInfo.InvariantCulture;
        if (type.IsEnum) return JsonSerializer.SerializeToNode(CliEnums.Parse(type, raw, flag), type, RunFiles.Json);
        if (type == typeof(string)) return raw;
        if (type == typeof(int) || type == typeof(long))
            return long.TryParse(raw, NumberStyles.Integer, invariant, out long l)
                ? l : throw new ArgumentException($"{flag}: \"{raw}\" is not a whole number");
        if (type == typeof(double))
            return double.TryParse(raw, NumberStyles.Float, invariant, out double d) ? d : throw new ArgumentException($"{flag}: \"{raw}\" is not a number");
        return bool.TryParse(raw, out bool b) ? b : throw new ArgumentException($"{flag}: \"{raw}\" is not true or false");
    }

    /// <summary>The XML docs of an assembly (its .xml beside the .dll), for the help text.</summary>
    sealed class XmlDocs(Dictionary<string, string> summaries)
    {
        public static XmlDocs Load(Assembly assembly)
        {
            string path = Path.ChangeExtension(assembly.Location, ".xml");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            if (!File.Exists(path)) return new XmlDocs(result);
            foreach (var member in XDocument.Load(path).Descendants("member"))
            {
                if (member.Attribute("name")?.Value is not string name || member.Element("summary") is not XElement summary) continue;
                // <see cref="T:A.B.C"/> reads as "C"; whitespace collapses to single spaces.
                var text = string.Concat(summary.Nodes().Select(n => n is XElement e
                    ? e.Attribute("cref")?.Value.Split('.').Last() ?? e.Attribute("langword")?.Value ?? e.Value
                    : n.ToString()));
                result[name] = string.Join(' ', System.Net.WebUtility.HtmlDecode(text).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
            }
            return new XmlDocs(result);
        }

        public string Summary(PropertyInfo property) =>
            summaries.TryGetValue($"P:{property.DeclaringType!.FullName}.{property.Name}", out var s) ? s : CliEnums.Kebab(property.Name).Replace('-', ' ');
    }
}
