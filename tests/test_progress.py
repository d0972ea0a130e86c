import io

from cifar10_research import metrics
from cifar10_research.progress import EpochProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_one_line_redrawn_then_the_epoch_summary():
    screen = Terminal()
    progress = EpochProgress(2, 10, total_steps=781, batch_size=64, stream=screen)
    assert not progress.due()  # Just started: nothing to redraw yet.
    progress.show(100, {})
    progress.show(200, metrics.Sums(loss=1.23456 * 12800, accuracy=0.5 * 12800,
                                    count=12800).means())
    progress.finish({"loss": 1.2, "accuracy": 0.55, "val_loss": 1.3, "val_accuracy": 0.52,
                     "val_top5_accuracy": None}, seconds=14.04)
    frames = screen.getvalue().split("\r\033[K")
    assert frames[1].startswith("Epoch 2/10 100/781 - loss - - accuracy - - ")
    assert frames[2].startswith("Epoch 2/10 200/781 - loss 1.2346 - accuracy 0.5000 - ")
    assert "images/s - ETA " in frames[2] and "\n" not in frames[2]
    assert frames[3] == ("Epoch 2/10 - loss 1.2000 - accuracy 0.5500 - val_loss 1.3000 - "
                         "val_accuracy 0.5200 - val_top5_accuracy - - 14.0s\n")


def test_a_log_file_gets_whole_lines_and_a_silent_worker_nothing():
    log = io.StringIO()
    EpochProgress(1, 1, total_steps=10, batch_size=8, stream=log).show(5, {})
    assert log.getvalue().startswith("Epoch 1/1 5/10 - ") and log.getvalue().endswith("s\n")
    silent = io.StringIO()
    quiet_progress = EpochProgress(1, 1, total_steps=10, batch_size=8, stream=silent,
                                   enabled=False)
    assert not quiet_progress.due()
    quiet_progress.finish({"loss": 1, "accuracy": 1, "val_loss": 1, "val_accuracy": 1}, 1)
    assert silent.getvalue() == ""
