namespace Distillery.Tests;

/// <summary>Paths into ../shared/data for tests. A missing file fails the test loudly; nothing is skipped.</summary>
internal static class TestData
{
    public static string Path(params string[] parts) => SharedData.Resolve(parts);

    /// <summary>A fresh temporary folder, deleted when disposed.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Dir { get; } = Directory.CreateTempSubdirectory("distillery-test-").FullName;
        public string this[string name] => System.IO.Path.Combine(Dir, name);
        public void Dispose() { try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } }
    }
}
