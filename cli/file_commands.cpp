// modbox upload | download | files | files rm: the files API behind a sandbox URL.

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "cli/cli.h"
#include "common/models.h"
#include "common/system.h"

namespace modbox {

namespace {

std::string human_size(std::uint64_t bytes) {
  char text[32];
  if (bytes < 1024)
    std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
  else if (bytes < (1 << 20))
    std::snprintf(text, sizeof text, "%.1f KiB", static_cast<double>(bytes) / 1024);
  else
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

/// On a terminal, a progress line for transfers over 1 MiB, rewritten in place; nothing otherwise
/// (scripts and CI logs get the one result line).
AgentClient::Progress progress_line(const std::string& label) {
  if (!::isatty(2)) return nullptr;
  return [label, shown = -1](std::uint64_t done, std::uint64_t total) mutable {
    if (total < (1 << 20)) return;
    int percent = static_cast<int>(done * 100 / total);
    if (percent == shown) return;
    shown = percent;
    std::fprintf(stderr, "\r%s: %3d%% of %s", label.c_str(), percent, human_size(total).c_str());
    if (done >= total) std::fprintf(stderr, "\r\033[K");
  };
}

void add_upload(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("upload", "Upload files into a sandbox's /workspace/uploads (50 MiB each)");
  struct Options {
    std::string task_id;
    std::vector<std::string> files;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("file", options->files, "Local files to upload")->required()->type_name("FILE");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto target = sandbox_target(context, options->task_id);
      if (!target) return std::unexpected(target.error());
      std::vector<std::string> answers;
      for (const auto& file : options->files) {
        auto body = target->agent.upload_file(target->url, file, progress_line("uploading " + file));
        if (!body) return std::unexpected(with_context(body.error(), "uploading " + file));
        auto stored = uploaded_file_from_json(*body);
        if (!stored) return std::unexpected(stored.error());
        if (context.json)
          answers.push_back(*body);
        else if (context.quiet)
          std::printf("%s\n", stored->filename.c_str());
        else
          std::printf("%s -> /workspace/uploads/%s (%s)\n", file.c_str(), stored->filename.c_str(),
                      human_size(stored->size).c_str());
      }
      if (context.json) {
        std::string array = "[";
        for (std::size_t i = 0; i < answers.size(); ++i) array += (i ? "," : "") + answers[i];
        std::printf("%s]\n", array.c_str());
      }
      return 0;
    };
  });
}

void add_download(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("download", "Download an uploaded file from a sandbox");
  struct Options {
    std::string task_id;
    std::string name;
    std::string output;
    bool force = false;
  };
  auto options = std::make_shared<Options>();
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  command->add_option("name", options->name, "The stored file name (as `modbox files` lists it)")
      ->required()
      ->type_name("NAME");
  command->add_option("-o,--output", options->output, "Where to write it (default ./NAME; - for standard output)")
      ->type_name("PATH");
  command->add_flag("-f,--force", options->force, "Replace an existing local file");
  command->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      std::filesystem::path out = options->output.empty() ? std::filesystem::path(options->name).filename()
                                                          : std::filesystem::path(options->output);
      if (out != "-" && std::filesystem::is_directory(out)) out /= std::filesystem::path(options->name).filename();
      if (out != "-" && !options->force && std::filesystem::exists(out))
        return fail(ErrorKind::conflict, out.string() + " exists; pass --force to replace it or -o another path");
      auto target = sandbox_target(context, options->task_id);
      if (!target) return std::unexpected(target.error());
      auto written =
          target->agent.download_file(target->url, options->name, out, progress_line("downloading " + options->name));
      if (!written) return std::unexpected(written.error());
      if (out != "-" && !context.quiet) std::printf("%s (%s)\n", out.c_str(), human_size(*written).c_str());
      return 0;
    };
  });
}

void print_files(const std::vector<UploadedFile>& files) {
  std::printf("%-48s %10s  %-24s %s\n", "NAME", "SIZE", "UPLOADED", "TYPE");
  for (const auto& file : files)
    std::printf("%-48s %10s  %-24s %s\n", file.filename.c_str(), human_size(file.size).c_str(),
                format_timestamp(file.uploaded_at).c_str(), file.mimetype.c_str());
}

void add_files(CLI::App& app, CliContext& context) {
  auto* command = app.add_subcommand("files", "List a sandbox's uploaded files; `files rm` deletes them");
  struct Options {
    std::string task_id;
    std::string search;
    std::string rm_task_id;
    std::vector<std::string> rm_names;
  };
  auto options = std::make_shared<Options>();
  // Not required here: `modbox files rm SANDBOX NAME` gives it to the subcommand instead.
  command->add_option("task_id", options->task_id, "The sandbox's task_id")->type_name(sandbox_type_name);
  command->add_option("--search", options->search, "Only names that contain this text");
  command->require_subcommand(0, 1);
  command->callback([&context, options, command] {
    if (!command->get_subcommands().empty()) return;
    if (options->task_id.empty()) throw CLI::RequiredError("task_id");
    context.action = [&context, options]() -> Result<int> {
      auto target = sandbox_target(context, options->task_id);
      if (!target) return std::unexpected(target.error());
      std::string path = "/modbox/api/files";
      if (!options->search.empty()) path += "?search=" + percent_encode(options->search);
      auto body = target->agent.sandbox_call(target->url, "GET", path);
      if (!body) return std::unexpected(body.error());
      return print_list(context, *body, uploaded_files_from_json, &UploadedFile::filename, print_files);
    };
  });

  auto* rm = command->add_subcommand("rm", "Delete uploaded files from a sandbox");
  rm->add_option("task_id", options->rm_task_id, "The sandbox's task_id")->required()->type_name(sandbox_type_name);
  rm->add_option("name", options->rm_names, "Stored file names")->required()->type_name("NAME");
  rm->callback([&context, options] {
    context.action = [&context, options]() -> Result<int> {
      auto target = sandbox_target(context, options->rm_task_id);
      if (!target) return std::unexpected(target.error());
      return for_each_name(
          context, options->rm_names, [&](const std::string& name) -> Result<std::pair<std::string, std::string>> {
            auto reply =
                target->agent.sandbox_request(target->url, "DELETE", "/modbox/api/files/" + percent_encode(name));
            if (!reply) return std::unexpected(reply.error());
            if (reply->status != 200)
              return std::unexpected(with_context(error_from_response(reply->status, reply->body), "deleting " + name));
            return std::pair{reply->body, context.quiet ? std::string() : "deleted " + name};
          });
    };
  });
}

}  // namespace

void add_file_commands(CLI::App& app, CliContext& context) {
  add_upload(app, context);
  add_download(app, context);
  add_files(app, context);
}

}  // namespace modbox
