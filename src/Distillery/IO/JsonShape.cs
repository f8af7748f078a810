using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Distillery;

/// <summary>
/// The JSON of run files, configs and recipes: indented, snake_case keys, enums as snake_case names (an enum with its
/// own [JsonConverter] keeps it), records shaped by <see cref="JsonInlineAttribute"/> and <see cref="IJsonForm{TSelf}"/>.
/// </summary>
public static class JsonFiles
{
    /// <summary>The serializer settings.</summary>
    public static JsonSerializerOptions Options { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new SnakeCaseEnums(), new ShapedJsonConverterFactory() },
    };

    /// <summary>Enums as snake_case names, except those that carry their own converter.</summary>
    sealed class SnakeCaseEnums : JsonConverterFactory
    {
        readonly JsonStringEnumConverter names = new(JsonNamingPolicy.SnakeCaseLower);

        public override bool CanConvert(Type type) => type.IsEnum && type.GetCustomAttribute<JsonConverterAttribute>() == null;

        public override JsonConverter? CreateConverter(Type type, JsonSerializerOptions options) => names.CreateConverter(type, options);
    }
}

/// <summary>
/// Marks a property whose record is written inline: its keys stand beside the parent's in JSON (a job's
/// <c>"task": "sst2", "data": …</c> are its <see cref="Training.TaskSpec"/>), while C# holds them in one record. A null value
/// writes no keys; reading builds the record when any of its keys is present.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class JsonInlineAttribute : Attribute;

/// <summary>
/// A record that reads and writes some keys itself, beside the ones <see cref="JsonFiles.Options"/> maps to its properties
/// (distillation options: <c>"method": name, name: {…}</c>, where the method's options record depends on the name).
/// </summary>
public interface IJsonForm<TSelf> where TSelf : IJsonForm<TSelf>
{
    /// <summary>Removes from <paramref name="json"/> the keys the record reads itself, checking them strictly; returns what they hold.</summary>
    static abstract object? TakeOwnKeys(JsonObject json, string where);

    /// <summary>The record read from its other keys, completed with what <see cref="TakeOwnKeys"/> returned.</summary>
    static abstract TSelf WithOwnKeys(TSelf read, object? own);

    /// <summary>Adds the record's own keys to its <paramref name="json"/> as written from its properties.</summary>
    static abstract void WriteOwnKeys(TSelf value, JsonObject json);
}

/// <summary>A converter that can turn a record's JSON into the shape of its C# properties (for <see cref="StrictJson"/>).</summary>
internal interface IShapedJson
{
    /// <summary>
    /// <paramref name="json"/> (changed in place) in the shape of the record's properties: inline records nested under
    /// their property's key, own keys (<see cref="IJsonForm{TSelf}"/>) checked and removed.
    /// </summary>
    void ToPropertyShape(JsonObject json, string where);
}

/// <summary>Reads and writes records with <see cref="JsonInlineAttribute"/> properties or <see cref="IJsonForm{TSelf}"/>.</summary>
public sealed class ShapedJsonConverterFactory : JsonConverterFactory
{
    /// <inheritdoc/>
    public override bool CanConvert(Type type) =>
        type.IsClass && (Inline(type).Count > 0 || FormInterface(type) != null);

    /// <inheritdoc/>
    public override JsonConverter CreateConverter(Type type, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(
            FormInterface(type) != null ? typeof(FormConverter<>).MakeGenericType(type) : typeof(InlineConverter<>).MakeGenericType(type))!;

    static Type? FormInterface(Type type) =>
        type.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IJsonForm<>));

    /// <summary>The inline properties of <paramref name="type"/>: the parent's key, and the keys of the inline record.</summary>
    internal static IReadOnlyList<(string Key, Type Type, string[] Keys, string[] Dropped)> Inline(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetCustomAttribute<JsonInlineAttribute>() != null)
            .Select(p =>
            {
                var inner = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
                var properties = inner.GetProperties(BindingFlags.Public | BindingFlags.Instance);
                string Name(PropertyInfo q) =>
                    q.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? JsonFiles.Options.PropertyNamingPolicy!.ConvertName(q.Name);
                bool ignored(PropertyInfo q) => q.GetCustomAttribute<JsonIgnoreAttribute>() is { Condition: JsonIgnoreCondition.Always };
                // Computed properties ([JsonIgnore]) were written by earlier versions (is_squad): dropped when read.
                return (Name(p), inner, properties.Where(q => !ignored(q)).Select(Name).ToArray(), properties.Where(ignored).Select(Name).ToArray());
            }).ToList();

    /// <summary>Moves the keys of each inline record into an object under the property's key.</summary>
    internal static void Nest(JsonObject json, Type type)
    {
        foreach (var (key, _, keys, dropped) in Inline(type))
        {
            foreach (var d in dropped) json.Remove(d);
            var moved = new JsonObject();
            foreach (var k in keys)
                if (json.TryGetPropertyValue(k, out var value))
                {
                    json.Remove(k);
                    moved[k] = value;
                }
            if (moved.Count > 0) json[key] = moved;
        }
    }

    /// <summary>Writes each inline record's keys in place of its property's key.</summary>
    internal static void Flatten(JsonObject json, Type type)
    {
        foreach (var (key, _, _, _) in Inline(type))
        {
            int at = json.IndexOf(key);
            if (at < 0) continue;
            var value = json[key];
            json.RemoveAt(at);
            if (value is not JsonObject inner) continue;
            foreach (var (k, v) in inner.ToList())
            {
                inner.Remove(k);
                json.Insert(at++, k, v);
            }
        }
    }

    static JsonSerializerOptions PlainOptions()
    {
        var options = new JsonSerializerOptions(JsonFiles.Options);
        for (int i = options.Converters.Count - 1; i >= 0; i--)
            if (options.Converters[i] is ShapedJsonConverterFactory) options.Converters.RemoveAt(i);
        return options;
    }

    /// <summary><see cref="JsonFiles.Options"/> without this factory: the records' own properties, read and written plainly.</summary>
    static readonly Lazy<JsonSerializerOptions> PlainLazy = new(PlainOptions);

    class InlineConverter<T> : JsonConverter<T>, IShapedJson
    {
        public virtual void ToPropertyShape(JsonObject json, string where) => Nest(json, typeof(T));

        public override T? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (JsonNode.Parse(ref reader) is not JsonObject json) throw new JsonException($"expected an object for {typeof(T).Name}");
            return ReadObject(json);
        }

        protected virtual T? ReadObject(JsonObject json)
        {
            Nest(json, typeof(T));
            return json.Deserialize<T>(PlainLazy.Value);
        }

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => WriteObject(value).WriteTo(writer);

        protected virtual JsonObject WriteObject(T value)
        {
            var json = JsonSerializer.SerializeToNode(value, PlainLazy.Value)!.AsObject();
            Flatten(json, typeof(T));
            return json;
        }
    }

    sealed class FormConverter<T> : InlineConverter<T> where T : IJsonForm<T>
    {
        public override void ToPropertyShape(JsonObject json, string where)
        {
            T.TakeOwnKeys(json, where);
            Nest(json, typeof(T));
        }

        protected override T? ReadObject(JsonObject json)
        {
            var own = T.TakeOwnKeys(json, "options");
            var read = base.ReadObject(json);
            return read is null ? read : T.WithOwnKeys(read, own);
        }

        protected override JsonObject WriteObject(T value)
        {
            var json = base.WriteObject(value);
            T.WriteOwnKeys(value, json);
            return json;
        }
    }
}
