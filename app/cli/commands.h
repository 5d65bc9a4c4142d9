#pragma once
// diffusionlab-cli's commands, one file each in app/cli/; each returns the process exit code
// (0 success, 1 runtime failure, 2 usage error).
#include <string>
#include <vector>

namespace dlab::app {

int cmd_schedule(const std::vector<std::string>& argv);
int cmd_info(const std::vector<std::string>& argv);
int cmd_train(const std::vector<std::string>& argv);
int cmd_sample(const std::vector<std::string>& argv);
int cmd_forward(const std::vector<std::string>& argv);
int cmd_train_classifier(const std::vector<std::string>& argv);
int cmd_train_clip(const std::vector<std::string>& argv);
int cmd_train_gan(const std::vector<std::string>& argv);
int cmd_trilemma(const std::vector<std::string>& argv);
int cmd_compare_schedules(const std::vector<std::string>& argv);
int cmd_eval(const std::vector<std::string>& argv);
int cmd_sds(const std::vector<std::string>& argv);
int cmd_video(const std::vector<std::string>& argv);
int cmd_eval_prompts(const std::vector<std::string>& argv);
int cmd_sweep(const std::vector<std::string>& argv);
int cmd_models(const std::vector<std::string>& argv);
int cmd_bench(const std::vector<std::string>& argv);
int cmd_train_autoencoder(const std::vector<std::string>& argv);
int cmd_convert(const std::vector<std::string>& argv);

}  // namespace dlab::app
