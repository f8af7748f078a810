using System.CommandLine;
using System.Text.Json.Nodes;
using Distillery.Training;

namespace Distillery.Cli.Commands;

/// <summary>
/// The flags of a <see cref="TaskSpec"/>, shared by every command that works on a task (finetune, eval, distill, prune,
/// quantize, bench). Each overrides the value from <c>--config</c> only when given.
/// </summary>
public sealed class TaskCliOptions(bool training = true)
{
    readonly Option<string?> task = new("--task")
    {
        Description = "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), squad, or a sentence-embedding evaluation (sts-embed, squad-retrieval, mrpc-embed).",
    };
    readonly Option<string?> data = new("--data") { Description = "GLUE, sts-embed, mrpc-embed: the glue_data folder (or the task's folder); SQuAD, squad-retrieval: the JSON file." };
    readonly Option<string?> evalData = new("--eval-data") { Description = "SQuAD: a separate evaluation JSON file." };
    readonly Option<int?> splitArticles = new("--split-articles") { Description = "SQuAD: train on N articles of --data (seeded), evaluate on the rest." };
    readonly Option<int?> maxLength = new("--max-length") { Description = "Longest input in tokens (GLUE 128, SQuAD 384)." };
    readonly Option<int?> docStride = new("--doc-stride") { Description = "SQuAD: window stride in tokens (default 128)." };
    readonly Option<int?> maxTrain = new("--max-train-examples") { Description = "GLUE: train on a seeded sample of at most N examples." };

    /// <summary>The <c>--max-train-examples</c> flag (for commands that refuse it in a mode that does not train).</summary>
    public Option<int?> MaxTrainExamples => maxTrain;

    IEnumerable<Option> All =>
        training ? [task, data, evalData, splitArticles, maxLength, docStride, maxTrain] : [task, data, evalData, splitArticles, maxLength, docStride];

    /// <summary>Adds the flags to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
    }

    /// <summary>Whether any of the flags was given.</summary>
    public bool Given(ParseResult parse) => All.Any(o => parse.GetResult(o) != null);

    /// <summary>The flags as config keys, to fill a <c>--config</c> before its required keys are checked.</summary>
    public Dictionary<string, JsonNode?> ConfigKeys(ParseResult parse) => new() { ["task"] = parse.GetValue(task), ["data"] = parse.GetValue(data) };

    /// <summary>The task spec: <paramref name="basis"/> (from <c>--config</c>) with the flags given over it.</summary>
    public TaskSpec Apply(ParseResult parse, TaskSpec? basis)
    {
        var name = parse.GetValue(task) is string t ? TaskNames.Parse(t) : basis?.Name ?? throw new ArgumentException("give --task (e.g. sst2 or squad)");
        string path = parse.GetValue(data) ?? basis?.Data ?? throw new ArgumentException("give --data (the glue_data folder or the SQuAD JSON file)");
        var o = (basis ?? new TaskSpec { Name = name, Data = path }) with { Name = name, Data = path };
        if (parse.GetValue(evalData) is string e) o = o with { EvalData = e };
        if (parse.GetValue(splitArticles) is int s) o = o with { SplitArticles = s };
        if (parse.GetValue(maxLength) is int m) o = o with { MaxLength = m };
        if (parse.GetValue(docStride) is int d) o = o with { DocStride = d };
        if (training && parse.GetValue(maxTrain) is int cap) o = o with { MaxTrainExamples = cap };
        return o.Validate();
    }
}
