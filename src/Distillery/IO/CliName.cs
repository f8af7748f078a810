namespace Distillery;

/// <summary>
/// The command-line spelling of an options property (its flag, without "--") or of an enum value, where it differs
/// from the name in kebab case (a property <c>Init</c> shown as <c>--successor-init</c>, a value <c>AntiCurriculum</c>
/// as <c>anti</c>). The CLI generates its flags from the options records and reads these.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class CliNameAttribute(string name) : Attribute
{
    /// <summary>The spelling on the command line.</summary>
    public string Name { get; } = name;
}
