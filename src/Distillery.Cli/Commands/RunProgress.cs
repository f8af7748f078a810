using Distillery.Training;
using Spectre.Console;

namespace Distillery.Cli.Commands;

/// <summary>
/// Renders a run's <see cref="RunEvents"/>: a live progress bar per stage (with ETA) in a terminal, or a log line per
/// stage and every 5% when the output is redirected.
/// </summary>
public static class RunProgress
{
    /// <summary>A run's message: a "warning: " one goes to stderr as the CLI's warnings do, the rest in grey.</summary>
    static void Say(CliContext context, string message)
    {
        if (message.StartsWith("warning: ", StringComparison.Ordinal)) context.Warn(message["warning: ".Length..]);
        else context.Console.MarkupLineInterpolated($"[grey]{message}[/]");
    }

    /// <summary>Runs <paramref name="work"/> with progress display; returns its result.</summary>
    public static T Show<T>(CliContext context, Func<RunEvents, T> work)
    {
        var console = context.Console;
        if (!console.Profile.Capabilities.Interactive)
        {
            int total = 0, lastPercent = -1;
            string stage = "";
            var events = new RunEvents
            {
                StageStarted = (name, units) => { stage = name; total = units; lastPercent = -1; console.MarkupLineInterpolated($"[bold]{name}[/] ({units:N0})"); },
                StageProgress = (done, status) =>
                {
                    int percent = total > 0 ? (int)(100L * done / total) : 0;
                    if (percent / 5 > lastPercent / 5 || done == total)
                    {
                        lastPercent = percent;
                        console.MarkupLineInterpolated($"  {stage} {done:N0}/{total:N0} ({percent}%) {status}");
                    }
                },
                Message = m => Say(context, m),
            };
            return work(events);
        }
        T result = default!;
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                ProgressTask? task = null;
                string name = "";
                var events = new RunEvents
                {
                    StageStarted = (stage, units) =>
                    {
                        task?.StopTask();
                        name = stage;
                        task = ctx.AddTask(Markup.Escape(stage), maxValue: Math.Max(1, units));
                    },
                    StageProgress = (done, status) =>
                    {
                        if (task == null) return;
                        task.Value = done;
                        task.Description = Markup.Escape($"{name}: {status}");
                    },
                    Message = m => Say(context, m),
                };
                result = work(events);
                task?.StopTask();
            });
        return result;
    }
}
