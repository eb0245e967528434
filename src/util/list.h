/* SPDX-License-Identifier: Apache-2.0 */
/* Singly linked lists and queues (internal): the links live in the elements
 * (a `next` member), so adding and removing never allocates. Macros, since
 * every list has its own element type. A queue is a list with a tail
 * pointer, for O(1) appends. A doubly linked list (NXC__DLIST_*) has a head
 * and a tail and names its two link members, so an element may sit in more
 * than one; it unlinks in O(1). */
#ifndef NXC_UTIL_LIST_H
#define NXC_UTIL_LIST_H

/* Take `item` (of `type`) out of the list `head` if it is there (walks it). */
#define NXC__LIST_UNLINK(type, head, item)                                                         \
    do {                                                                                           \
        for (type **nxc__pp = &(head); *nxc__pp; nxc__pp = &(*nxc__pp)->next)                      \
            if (*nxc__pp == (item)) {                                                              \
                *nxc__pp = (item)->next;                                                           \
                break;                                                                             \
            }                                                                                      \
    } while (0)

/* Append `item` to the queue `head`..`tail` whose link member is `link`. */
#define NXC__QUEUE_APPEND_BY(head, tail, item, link)                                               \
    do {                                                                                           \
        (item)->link = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->link = (item);                                                                 \
        else                                                                                       \
            (head) = (item);                                                                       \
        (tail) = (item);                                                                           \
    } while (0)

/* Append `item` to the queue `head`..`tail`. */
#define NXC__QUEUE_APPEND(head, tail, item) NXC__QUEUE_APPEND_BY(head, tail, item, next)

/* Take the first element off the queue `head`..`tail` (not empty) into `out`. */
#define NXC__QUEUE_POP(head, tail, out)                                                            \
    do {                                                                                           \
        (out) = (head);                                                                            \
        (head) = (out)->next;                                                                      \
        if (!(head)) (tail) = NULL;                                                                \
        (out)->next = NULL;                                                                        \
    } while (0)

/* Take `item` (of `type`) out of the queue `head`..`tail` if it is there. */
#define NXC__QUEUE_UNLINK(type, head, tail, item)                                                  \
    do {                                                                                           \
        type *nxc__prev = NULL;                                                                    \
        for (type *nxc__q = (head); nxc__q; nxc__prev = nxc__q, nxc__q = nxc__q->next) {           \
            if (nxc__q != (item)) continue;                                                        \
            if (nxc__prev)                                                                         \
                nxc__prev->next = nxc__q->next;                                                    \
            else                                                                                   \
                (head) = nxc__q->next;                                                             \
            if ((tail) == nxc__q) (tail) = nxc__prev;                                              \
            nxc__q->next = NULL;                                                                   \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

/* Put `item` last in the doubly linked list `head`..`tail`. */
#define NXC__DLIST_APPEND(head, tail, item, prev, next)                                            \
    do {                                                                                           \
        (item)->prev = (tail);                                                                     \
        NXC__QUEUE_APPEND_BY(head, tail, item, next);                                              \
    } while (0)

/* Put `item` first in the doubly linked list `head`..`tail`: appending
 * with the two ends and the two links swapped. */
#define NXC__DLIST_PUSH(head, tail, item, prev, next)                                              \
    NXC__DLIST_APPEND(tail, head, item, next, prev)

/* Take `item`, which is in it, out of the doubly linked list `head`..`tail`. */
#define NXC__DLIST_UNLINK(head, tail, item, prev, next)                                            \
    do {                                                                                           \
        if ((item)->prev)                                                                          \
            (item)->prev->next = (item)->next;                                                     \
        else                                                                                       \
            (head) = (item)->next;                                                                 \
        if ((item)->next)                                                                          \
            (item)->next->prev = (item)->prev;                                                     \
        else                                                                                       \
            (tail) = (item)->prev;                                                                 \
        (item)->prev = (item)->next = NULL;                                                        \
    } while (0)

#endif
