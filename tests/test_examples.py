"""The seed's ML example: an iris SVM workflow, unchanged from Covalent but for the import."""

import qflow as ct


@ct.electron
def load_data():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


@ct.electron
def train_svm(data, C, gamma):
    from sklearn.svm import SVC

    x, y = data
    clf = SVC(C=C, gamma=gamma)
    clf.fit(x[::2], y[::2])
    return clf


@ct.electron
def score_svm(data, clf):
    x, y = data
    return clf.score(x[1::2], y[1::2])


@ct.lattice
def run_experiment(C=1.0, gamma=0.7):
    data = load_data()
    clf = train_svm(data=data, C=C, gamma=gamma)
    return score_svm(data=data, clf=clf)


def test_iris_svm():
    """The workflow completes and scores like the same code run in-process."""
    dispatch_id = ct.dispatch(run_experiment)(C=1.0, gamma=0.7)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.status == ct.status.COMPLETED, result.error
    assert result.result == run_experiment(C=1.0, gamma=0.7)
    assert 0.9 < result.result <= 1.0
    outputs = result.get_all_node_outputs()
    assert list(outputs) == [
        "load_data(0)",
        "train_svm(1)",
        ":parameter:1.0(2)",
        ":parameter:0.7(3)",
        "score_svm(4)",
        ":postprocess:reconstruct(5)",
    ]
