using System.Globalization;
using System.Reflection;

namespace Distillery.Cli.Commands;

/// <summary>
/// Enum values as the command line spells them, parsed in one place: kebab case of the member name
/// (<c>ImportanceScore.Platon</c> is <c>platon</c>) or its <see cref="CliNameAttribute"/>. An unknown value is one line
/// naming the flag and listing the valid values.
/// </summary>
public static class CliEnums
{
    /// <summary>The spellings of <paramref name="type"/>'s members, in declaration order.</summary>
    public static IReadOnlyList<(string Name, object Value)> Names(Type type) =>
        type.GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => (f.GetCustomAttribute<CliNameAttribute>()?.Name ?? Kebab(f.Name), f.GetValue(null)!)).ToList();

    /// <summary>The member of <paramref name="type"/> spelt <paramref name="value"/> (case-insensitive).</summary>
    public static object Parse(Type type, string value, string flag)
    {
        var names = Names(type);
        foreach (var (name, member) in names)
            if (name.Equals(value.Trim(), StringComparison.OrdinalIgnoreCase)) return member;
        throw new ArgumentException($"{flag}: \"{value}\" is not one of {string.Join(", ", names.Select(n => n.Name))}");
    }

    /// <summary>The member of <typeparamref name="T"/> spelt <paramref name="value"/>.</summary>
    public static T Parse<T>(string value, string flag) where T : struct, Enum => (T)Parse(typeof(T), value, flag);

    /// <summary>The command-line spelling of <paramref name="value"/>.</summary>
    public static string Name(object value) => Names(value.GetType()).First(n => Equals(n.Value, value)).Name;

    /// <summary>"AlphaMlm" → "alpha-mlm", "V2" → "v2".</summary>
    public static string Kebab(string name)
    {
        var result = new System.Text.StringBuilder();
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c) && i > 0 && !char.IsUpper(name[i - 1])) result.Append('-');
            result.Append(char.ToLower(c, CultureInfo.InvariantCulture));
        }
        return result.ToString();
    }
}
